"""The run folder as one web page, report.html.

The page is a single self-contained file: pictures are base64 data URIs, the CSS
(style.css) is inline, there is no JavaScript and nothing is fetched, so it opens anywhere,
offline, and can be mailed or attached as it is. Only the files a run wrote are read;
torch is not imported.

>>> write_report("runs/line")  # doctest: +SKIP
PosixPath('runs/line/report.html')
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from torchwork import __version__, registry
from torchwork.errors import RunFolderError
from torchwork.fileio import write_text_atomic
from torchwork.report.format import (
    HEADINGS,
    _coefficient,
    _decision_sentences,
    _dropped_words,
    _e,
    _epochs,
    _figure,
    _final_metrics,
    _finished,
    _flatten,
    _folder_words,
    _missing_words,
    _num,
    _page,
    _rounded,
    _scroll,
    _seconds,
    _settings,
    _source,
    _toml,
)
from torchwork.runfolder import (
    CONFIG,
    PLOTS,
    PREDICTIONS,
    REPORT,
    RunFolder,
    Summary,
    _read_bytes,
    read_run_folder,
)

PREVIEW_ROWS = 10  # predictions.csv rows shown; the file itself can have millions
HISTORY_ROWS = 40  # metrics.csv rows shown in full; longer histories show both ends
# The pictures in the order the course meets them; any others follow by name.
PICTURES = {
    "loss_curves": "Training and test loss curves",
    "predictions_before": "Predictions before training",
    "predictions_after": "Predictions after training",
    "predicted_vs_actual": "Predicted vs actual (test data)",
    "residuals": "Residuals (test data)",
    "confusion_matrix": "Confusion matrix (test data)",
    "test_predictions": "Test images: predicted and true labels (mistakes in red)",
}
PICTURE_PREFIXES = {"pushes_": "What pushes the predictions: "}  # one picture a column
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_report(run_folder: str | Path) -> Path:
    """Write report.html into a run folder from what the run wrote; return its path.

    The page shows the config, the data split, the metrics beside the reference (closed-form
    least squares, or the majority class), learned against true parameters for the line,
    the confusion matrix, every picture in plots/, timings and versions.
    """
    run = read_run_folder(run_folder)
    path = run.path / REPORT
    write_text_atomic(path, report_html(run))
    return path


def report_html(run: RunFolder) -> str:
    """The report page of one run as HTML text."""
    s = run.summary
    sections = [
        ("overview", "Overview", _overview(run)),
        ("data", "Data", _data_section(run)),
        ("metrics", "Evaluation", _metrics_section(s)),
    ]
    if isinstance(s.get("cross_validation"), dict):
        sections.append(
            ("crossval", "Cross-validation", _cross_validation_section(s["cross_validation"]))
        )
    if isinstance(s.get("importance"), dict):
        sections.append(("importance", "Which inputs matter", _importance_section(s)))
    if isinstance(s.get("explained"), dict) and s["explained"]:
        sections.append(("explained", "What pushes the predictions", _explained_section(s)))
    if isinstance(s.get("mistakes"), list) and s["mistakes"]:
        sections.append(("mistakes", "Mistakes", _mistakes_section(s["mistakes"])))
    parameters = _parameters_section(s)
    if parameters:
        sections.append(("parameters", "Learned parameters", parameters))
    if s.get("confusion_matrix") and s.get("labels"):
        sections.append(
            (
                "confusion",
                "Confusion matrix",
                _confusion_section(s["confusion_matrix"], s["labels"]),
            )
        )
    sections.append(("pictures", "Pictures", _pictures_section(run.path / PLOTS, s)))
    sections.append(("training", "Training", _training_section(run)))
    predictions = run.path / PREDICTIONS
    if predictions.is_file():
        sections.append(("predictions", "Predictions", _predictions_section(predictions, s)))
    sections.append(("config", "Config", _config_section(run)))
    sections.append(("versions", "Versions", _versions_section(s)))

    nav = " ".join(f'<a href="#{key}">{_e(title)}</a>' for key, title, _ in sections[1:])
    body = "\n".join(
        f'<section id="{key}">\n<h2>{_e(title)}</h2>\n{content}\n</section>'
        for key, title, content in sections
    )
    title = f"torchwork run {run.name}"
    header = (
        f"<header>\n<h1>{_e(title)}</h1>\n"
        f'<p class="muted">{_e(str(run.path))} · {_e(_finished(run.path))}</p>\n'
        f"<nav>{nav}</nav>\n</header>"
    )
    return _page(title, header + "\n" + body)


def _overview(run: RunFolder) -> str:
    s, flat = run.summary, _flatten(run.config)
    task = s.get("task", "?")
    model = str(flat.get("model.kind", "?"))
    if model == "mlp" and flat.get("model.hidden"):
        model += " " + "×".join(str(h) for h in flat["model.hidden"])
    facts = [
        ("Task", task),
        ("Model", model),
        ("Loss", flat.get("train.loss", "?")),
        ("Optimizer", f"{flat.get('train.optimizer', '?')} (lr {_value(flat.get('train.lr'))})"),
        ("Epochs run", _epochs(s, flat)),
        ("Training time", _seconds(s.get("seconds"))),
    ]
    split, metrics = _final_metrics(s)
    if metrics:
        name = next(iter(metrics))
        reference = ((s.get("reference") or {}).get("metrics") or {}).get(split) or {}
        shown = _num(metrics[name])
        if name in reference:
            shown += f" ({_reference_name(s)} {_num(reference[name])})"
        headline = f"{split} {HEADINGS.get(name, name)}"
        return _facts([(headline, shown), *facts], wide=headline)
    return _facts(facts)


def _facts(facts: list[tuple[str, Any]], wide: str = "") -> str:
    cards = "".join(
        f'<div class="fact{" wide" if label == wide else ""}"><b>{_e(label)}</b>'
        f"{_e(str(value))}</div>"
        for label, value in facts
    )
    return f'<div class="facts">{cards}</div>'


def _columns(data: dict[str, Any]) -> str:
    """What each kind of column became: one line a block (summary.json's data.columns)."""
    blocks = [b for b in data.get("columns") or [] if isinstance(b, dict) and b.get("about")]
    if not blocks:
        return ""
    items = "".join(f"<li>{_e(str(b['about']))}</li>" for b in blocks)
    return f"<ul>{items}</ul>"


def _data_section(run: RunFolder) -> str:
    s, flat = run.summary, _flatten(run.config)
    data = s.get("data") or {}
    if _source(s) == "folder":
        source = (
            f"<p>The folder <code>{_e(str(data.get('path', '')))}</code>: a folder of "
            f"{_e(_folder_words(s))}; the class is the target, "
            f"<code>{_e(str(data.get('target') or 'label'))}</code>.</p>"
        ) + _columns(data)
    elif _source(s) == "table":
        names = [str(f) for f in data.get("features") or []]
        features = ", ".join(names[:20]) + (
            f" and {len(names) - 20} more" if len(names) > 20 else ""
        )
        rows = data.get("table_rows")
        source = (
            f"<p>The table <code>{_e(str(data.get('path', '')))}</code>"
            + (f", {rows:,} rows" if isinstance(rows, int) else "")
            + f": target <code>{_e(str(data.get('target', '')))}</code>"
            + (f", features {_e(features)}" if names else "")
            + ".</p>"
        ) + _columns(data)
        for words in (_dropped_words(s), _missing_words(s)):
            if words:
                source += f"<p>{_e(words)}.</p>"
    else:
        true = s.get("true") or {}
        weight = true.get("weight", flat.get("data.weight"))
        bias = true.get("bias", flat.get("data.bias"))
        noise = flat.get("data.noise")
        source = (
            f"<p>The straight line <code>y = {_e(_value(weight))} * X + {_e(_value(bias))}</code>"
            f" for X from {_e(_value(flat.get('data.start')))} to {_e(_value(flat.get('data.end')))}"
            f" in steps of {_e(_value(flat.get('data.step')))}"
            + (f", with noise of std {_e(_value(noise))}" if noise else "")
            + ".</p>"
        )
    rows = {k: v for k, v in (s.get("rows") or {}).items() if isinstance(v, int)}
    total = sum(rows.values())
    body = "".join(
        f'<tr><th>{_e(name)}</th><td class="num">{count}</td>'
        f'<td class="num">{100 * count / max(total, 1):.0f}%</td></tr>'
        for name, count in rows.items()
    )
    body += (
        f'<tr class="total"><th>all</th><td class="num">{total}</td><td class="num">100%</td></tr>'
    )
    shuffle = "shuffled (seeded) before splitting" if flat.get("data.shuffle") else "split in order"
    table = _scroll(
        '<table class="narrow"><thead><tr><th>split</th><th class="num">rows</th>'
        f'<th class="num">share</th></tr></thead><tbody>{body}</tbody></table>'
    )
    return f'{source}\n{table}\n<p class="muted">Rows {_e(shuffle)}.</p>'


def _metrics_section(s: Summary) -> str:
    metrics = {k: v for k, v in s["metrics"].items() if isinstance(v, dict)}
    if not metrics:
        return '<p class="muted">The summary has no metrics.</p>'
    reference = s.get("reference") or {}
    reference_metrics = reference.get("metrics") or {}
    reference_name = _reference_name(s)
    names: list[str] = []
    for values in metrics.values():
        names += [n for n in values if n not in names]
    head = "".join(f'<th class="num">{_e(HEADINGS.get(n, n))}</th>' for n in names)
    body = []
    for split, values in metrics.items():
        cells = "".join(f'<td class="num">{_e(_num(values.get(n)))}</td>' for n in names)
        ref = reference_metrics.get(split)
        span = ' rowspan="2"' if isinstance(ref, dict) else ""
        body.append(f'<tr class="first"><th{span}>{_e(split)}</th><td>learned</td>{cells}</tr>')
        if isinstance(ref, dict):
            cells = "".join(f'<td class="num">{_e(_num(ref.get(n)))}</td>' for n in names)
            body.append(f'<tr class="ref"><td>{_e(reference_name)}</td>{cells}</tr>')
    table = _scroll(
        f"<table><thead><tr><th>split</th><th>model</th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )
    method = reference.get("method")
    note = ""
    if method:
        note = f"The reference ({_e(reference_name)}): {_e(str(method))}"
        if "label" in reference:
            note += f", always predicting <code>{_e(str(reference['label']))}</code>"
        note = f'<p class="muted">{note}.</p>'
    elif reference.get("skipped"):
        note = f'<p class="muted">No reference: {_e(str(reference["skipped"]))}.</p>'
    for key, sentence in _decision_sentences(s).items():
        picture = " (plots/reliability.png)" if key == "calibration" else ""
        note += f"<p>{_e(sentence)}{picture}.</p>"
    return table + note


def _cross_validation_section(cv: dict[str, Any]) -> str:
    """--folds / --repeats: mean ± standard deviation per split, then every fit's metrics."""
    mean, std = cv.get("mean") or {}, cv.get("std") or {}
    fits = [f for f in cv.get("fits") or [] if isinstance(f, dict)]
    names: list[str] = []
    for values in mean.values():
        names += [n for n in values if n not in names]
    head = "".join(f'<th class="num">{_e(HEADINGS.get(n, n))}</th>' for n in names)
    rows = "".join(
        f"<tr><th>{_e(split)}</th>"
        + "".join(
            f'<td class="num">{_e(_num(values.get(n), 4))} ± '
            f"{_e(_num((std.get(split) or {}).get(n), 4))}</td>"
            for n in names
        )
        + "</tr>"
        for split, values in mean.items()
    )
    spread = _scroll(
        f"<table><thead><tr><th>split</th>{head}</tr></thead><tbody>{rows}</tbody></table>"
    )
    folds, repeats = cv.get("folds") or 0, cv.get("repeats") or 1
    what = (
        f"{folds} folds of the {_e(str(cv.get('rows')))} training and validation rows, each fit "
        "validated (and stopped early, where patience is set) on one fold"
        if folds
        else f"{len(fits)} fits of the run's own split"
    )
    if repeats > 1 and folds:
        what += f", {repeats} times with new seeds"
    note = (
        f'<p class="muted">{len(fits)} fits: {what}; mean ± sample standard deviation over '
        f"the fits, in {_e(_num(cv.get('seconds'), 1))} s. The saved model is not one of them: "
        f"{_e(str(cv.get('final_model', '')))}.</p>"
    )
    fit_head = "".join(
        f'<th class="num">{_e(split)} {_e(HEADINGS.get(n, n))}</th>'
        for split in mean
        for n in names
    )
    fit_rows = "".join(
        f"<tr><td>{_e(str(f.get('repeat', '')))}</td><td>{_e(str(f.get('fold', '-')))}</td>"
        f'<td>{_e(str(f.get("seed", "")))}</td><td class="num">{_e(str(f.get("epochs_run", "")))}</td>'
        + "".join(
            f'<td class="num">{_e(_num(((f.get("metrics") or {}).get(split) or {}).get(n), 4))}</td>'
            for split in mean
            for n in names
        )
        + "</tr>"
        for f in fits
    )
    per_fit = _scroll(
        '<table><thead><tr><th>repeat</th><th>fold</th><th>seed</th><th class="num">epochs</th>'
        f"{fit_head}</tr></thead><tbody>{fit_rows}</tbody></table>"
    )
    return spread + note + "<details><summary>Every fit</summary>" + per_fit + "</details>"


def _importance_section(s: Summary) -> str:
    """Permutation importance per column; a linear model's coefficients in raw units."""
    importance = s["importance"]
    metric = HEADINGS.get(importance.get("metric", ""), importance.get("metric", ""))
    rows = "".join(
        f'<tr><th>{_e(str(c.get("column")))}</th><td class="num">{_e(_num(c.get("mean"), 4))}'
        f" ± {_e(_num(c.get('std'), 4))}</td></tr>"
        for c in importance.get("columns") or []
        if isinstance(c, dict)
    )
    html = _scroll(
        f'<table><thead><tr><th>column</th><th class="num">drop in test {_e(metric)}</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
    ) + (
        f'<p class="muted">Each column shuffled {_e(str(importance.get("repeats")))} times across '
        f"{_e(str(importance.get('rows')))} test rows (a text column's inputs together): the "
        f"mean drop in {_e(metric)} from {_e(_num(importance.get('baseline'), 4))}, ± the "
        "standard deviation over the shuffles. The picture is plots/importance.png.</p>"
    )
    coefficients = s.get("coefficients") or {}
    learned = coefficients.get("learned") or {}
    if learned.get("inputs"):
        closed = coefficients.get("closed_form") or {}
        head = "<th>input</th>" + "".join(
            f'<th class="num">{_e(label)}</th>'
            for label in ["learned", *(["closed-form"] if closed else [])]
        )
        body = ""
        names = [*learned["inputs"], "(bias)"]
        for i, name in enumerate(names):
            values = [learned] + ([closed] if closed else [])
            cells = "".join(
                f'<td class="num">{_e(_num(_coefficient(v, i), 6))}</td>' for v in values
            )
            body += f"<tr><th>{_e(str(name))}</th>{cells}</tr>"
        html += "<h3>Coefficients, in the columns' own units</h3>" + _scroll(
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
    return html


def _explained_section(s: Summary) -> str:
    """What pushes the predictions (summary.json's `explained`): a table a column, its
    groups (classes) side by side."""
    html = ""
    for column, part in s["explained"].items():
        if not isinstance(part, dict) or not isinstance(part.get("groups"), dict):
            continue
        groups = part["groups"]
        cells = "".join(
            f"<td>{'<br>'.join(_e(f'{g} ({_num(v, 2)})') for g, v in top) or '-'}</td>"
            for top in groups.values()
        )
        head = "".join(f"<th>{_e(str(label))}</th>" for label in groups)
        html += f"<h3>{_e(str(column))}: {_e(str(part.get('title')))}</h3>" + _scroll(
            f"<table><thead><tr>{head}</tr></thead><tbody><tr>{cells}</tr></tbody></table>"
        )
        html += (
            f'<p class="muted">Each one\'s push, in {_e(str(part.get("measure")))}, measured on '
            f"{_e(str(part.get('rows')))} test rows: the model's output for that one alone, less "
            "for none. The picture is in plots/.</p>"
        )
    return html


def _mistakes_section(mistakes: list[Any]) -> str:
    """A classifier's mistakes among the first test rows, as a person reads them."""
    rows = "".join(
        "<tr><td>"
        + "<br>".join(_e(f"{k}: {v}") for k, v in (m.get("columns") or {}).items())
        + f"</td><td>{_e(str(m.get('true')))}</td><td>{_e(str(m.get('predicted')))}</td>"
        f'<td class="num">{_e(_num(m.get("probability"), 3))}</td></tr>'
        for m in mistakes
        if isinstance(m, dict)
    )
    return (
        _scroll(
            "<table><thead><tr><th>row</th><th>true</th><th>predicted</th>"
            f'<th class="num">probability</th></tr></thead><tbody>{rows}</tbody></table>'
        )
        + '<p class="muted">Test rows the model got wrong, from the first of them.</p>'
    )


def _parameters_section(s: Summary) -> str:
    learned = s.get("learned") or {}
    parts = []
    true = s.get("true")
    if isinstance(true, dict):
        reference = s.get("reference") or {}
        line = registry.learned_line(learned) if isinstance(learned, dict) else None
        body = []
        for i, name in enumerate(("weight", "bias")):
            mine = line[i] if line is not None else None
            exact = (reference.get(name) or [None])[0]
            truth = true.get(name)
            gap = abs(mine - truth) if mine is not None and truth is not None else None
            body.append(
                f"<tr><th>{name}</th>"
                f'<td class="num learned">{_e(_num(mine, 4)) if line else "(mlp)"}</td>'
                f'<td class="num">{_e(_num(exact, 4))}</td>'
                f'<td class="num">{_e(_num(truth, 4))}</td>'
                f'<td class="num">{_e(_num(gap, 4))}</td></tr>'
            )
        parts.append(
            "<p>The line the model learned, next to the exact answer (closed-form least "
            "squares) and the parameters the data was made with.</p>"
            + _scroll(
                '<table class="narrow"><thead><tr><th></th><th class="num">learned</th>'
                '<th class="num">closed-form</th><th class="num">true</th>'
                '<th class="num">|learned − true|</th></tr></thead>'
                f"<tbody>{''.join(body)}</tbody></table>"
            )
        )
    if learned:
        rows = []
        for name, values in learned.items():
            values = values if isinstance(values, list) else [values]
            shown = " ".join(_num(v, 4) for v in values[:8]) + (" …" if len(values) > 8 else "")
            rows.append(
                f'<tr><th><code>{_e(str(name))}</code></th><td class="num">{len(values)}</td>'
                f"<td><code>{_e(shown)}</code></td></tr>"
            )
        total = sum(len(v) if isinstance(v, list) else 1 for v in learned.values())
        table = _scroll(
            '<table class="narrow"><thead><tr><th>tensor</th><th class="num">numbers</th>'
            "<th>values</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
        opened = " open" if total <= 16 else ""
        parts.append(
            f"<details{opened}><summary>Every learned tensor ({total} numbers)</summary>"
            f"{table}</details>"
        )
    return "\n".join(parts)


def _confusion_section(matrices: dict[str, Any], labels: list[Any]) -> str:
    order = [n for n in ("test", "val", "train") if n in matrices]
    order += [n for n in matrices if n not in order]
    parts = ['<p class="muted">Rows: the actual class; columns: the predicted class.</p>']
    for split in order:
        matrix = matrices[split]
        if not isinstance(matrix, list):
            continue
        largest = max((max(row) for row in matrix if row), default=0) or 1
        head = "".join(f'<th class="num">{_e(str(v))}</th>' for v in labels)
        body = []
        for i, (label, row) in enumerate(zip(labels, matrix, strict=False)):
            cells = []
            for j, count in enumerate(row):
                share = count / largest
                style = f"background:rgba(9,105,218,{0.85 * share:.2f})"
                if share > 0.55:
                    style += ";color:#fff"
                kind = "num diag" if i == j else "num"
                cells.append(f'<td class="{kind}" style="{style}">{count}</td>')
            body.append(f"<tr><th>{_e(str(label))}</th>{''.join(cells)}</tr>")
        rows = sum(sum(r) for r in matrix)
        table = _scroll(
            f'<table class="narrow confusion"><thead><tr><th>actual \\ predicted</th>{head}</tr>'
            f"</thead><tbody>{''.join(body)}</tbody></table>"
        )
        block = f"<h3>{_e(split)} ({rows} rows)</h3>{table}"
        if split != order[0]:
            block = f"<details><summary>{_e(split)} ({rows} rows)</summary>{table}</details>"
        parts.append(block)
    return "\n".join(parts)


def _pictures_section(folder: Path, s: Summary) -> str:
    pngs = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if not pngs:
        return '<p class="muted">No pictures: the run was made with --no-plots.</p>'
    order = list(PICTURES)
    pngs.sort(key=lambda p: (order.index(p.stem) if p.stem in order else len(order), p.name))
    figures = []
    for png in pngs:
        data = _read_bytes(png)
        if not data.startswith(PNG_SIGNATURE):
            raise RunFolderError(f"{png} is not a PNG picture: remove it, or draw the plots again")
        figures.append(_figure(data, _caption(png.stem, s), f"{PLOTS}/{png.name}"))
    return f'<div class="figures">{"".join(figures)}</div>'


def _caption(stem: str, s: Summary) -> str:
    """What a picture of plots/ shows, and how to read it where that is not plain."""
    if stem == "reliability":
        return _reliability_caption(s)
    if stem == "importance":
        importance = s.get("importance") or {}
        metric = HEADINGS.get(importance.get("metric"), importance.get("metric") or "metric")
        coefficients = (s.get("coefficients") or {}).get("learned")
        return (
            f"Which inputs matter: the drop in the test {metric} when each column is shuffled "
            "(the bar; the line across it: the standard deviation over the shuffles), the "
            "largest at the top"
            + ("; beside it, the linear model's coefficients" if coefficients else "")
        )
    prefix = next((p for p in PICTURE_PREFIXES if stem.startswith(p)), None)
    if prefix is not None:
        return PICTURE_PREFIXES[prefix] + stem[len(prefix) :]
    return PICTURES.get(stem, stem.replace("_", " "))


def _reliability_caption(s: Summary) -> str:
    calibration = s.get("calibration") or {}
    split = (calibration.get("reliability") or {}).get("split", "test")
    scores = (calibration.get("splits") or {}).get(split) or {}
    caption = (
        f"Reliability diagram ({split} data): the rows in bins of the probability the model "
        "gave its predicted class; each point is one bin: across, the mean predicted "
        "probability of its rows; up, how often those predictions were right (the observed "
        "frequency). On the dashed diagonal the probabilities are perfectly calibrated; below "
        "it the model is over-confident, above it under-confident."
    )
    before, after = scores.get("ece_before"), scores.get("ece_after")
    if isinstance(before, (int, float)) and isinstance(after, (int, float)):
        caption += (
            f" Expected calibration error (the mean gap to the diagonal, weighted by rows): "
            f"{_num(before, 4)} before temperature scaling, {_num(after, 4)} after."
        )
    return caption


def _training_section(run: RunFolder) -> str:
    s, flat = run.summary, _flatten(run.config)
    batch = flat.get("train.batch_size")
    facts = [
        ("Epochs run", _epochs(s, flat)),
        ("Stopped early", "yes" if s.get("stopped_early") else "no"),
        ("Converged", _converged(s, flat)),
        ("Best epoch", "—" if s.get("best_epoch") is None else str(s.get("best_epoch"))),
        ("Optimizer", _chosen(s, flat, "optimizer")),
        ("Learning rate", _chosen(s, flat, "lr")),
        ("Batch size", _chosen(s, flat, "batch_size", "full batch" if batch == 0 else None)),
        ("Training time", _seconds(s.get("seconds"))),
        ("Device", s.get("device", "?")),
        ("Seed", _value(s.get("seed", flat.get("train.seed")))),
    ]
    history = run.history
    if not history:
        return _facts(facts) + '<p class="muted">No metrics.csv.</p>'
    columns: list[str] = []
    for record in history:
        columns += [k for k in record if k not in columns]
    shown: list[dict[str, float] | None] = list(history)
    if len(history) > HISTORY_ROWS:
        half = HISTORY_ROWS // 2
        shown = [*history[:half], None, *history[-half:]]
    head = "".join(f'<th class="num">{_e(HEADINGS.get(c, c))}</th>' for c in columns)
    body = []
    for record in shown:
        if record is None:
            body.append(
                f'<tr><td colspan="{len(columns)}" class="muted">… '
                f"{len(history) - HISTORY_ROWS} rows left out …</td></tr>"
            )
            continue
        cells = "".join(
            f'<td class="num">{_e(_epoch(record[c]) if c == "epoch" else _num(record.get(c), 5))}</td>'
            if c in record
            else '<td class="num"></td>'
            for c in columns
        )
        body.append(f"<tr>{cells}</tr>")
    table = _scroll(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    return (
        f"{_facts(facts)}\n"
        f"<details><summary>The recorded losses (metrics.csv, {len(history)} rows)</summary>"
        f"{table}</details>"
    )


def _predictions_section(path: Path, s: Summary) -> str:
    # Only the first rows are read when the summary says how many there are: the file
    # holds every row of the table, which may be millions.
    rows = (s.get("data") or {}).get("table_rows")
    preview: list[list[str]] = []
    count = 0
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            for row in reader:
                count += 1
                if len(preview) < PREVIEW_ROWS:
                    preview.append(row)
                elif rows is not None:
                    count = rows
                    break
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise RunFolderError(
            f"cannot read {path} ({reason}): check the file, or run the training again"
        ) from None
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    # The model's numbers (a regression's predictions and bounds, the class probabilities)
    # rounded for reading, as the page's other numbers are; the rows' own values (file,
    # split, target) and predicted labels as written.
    target = str((s.get("data") or {}).get("target", ""))
    labels = s.get("task") != "regression"
    ours = [
        name not in {"file", "split", target, f"{target} (actual)"}
        and not (labels and name.startswith("prediction"))
        for name in header
    ]
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{_e(_short(_rounded(cell) if i < len(ours) and ours[i] else cell))}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in preview
    )
    table = _scroll(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return (
        f"<p>predictions.csv holds every row of the table ({count} rows) with its split, "
        f"target and prediction; the first {len(preview)} are shown here.</p>{table}"
    )


def _config_section(run: RunFolder) -> str:
    flat = _flatten(run.config)
    shown = _settings(run.summary, flat)
    groups: dict[str, list[str]] = {}
    for name, value in shown.items():
        group, _, key = name.rpartition(".")
        groups.setdefault(group, []).append(
            f"<tr><th><code>{_e(key)}</code></th><td><code>{_e(_toml(value))}</code></td></tr>"
        )
    tables = "".join(
        _scroll(
            f'<table><thead><tr><th colspan="2">{_e(f"[{group}]" if group else "top level")}'
            f"</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
        for group, rows in groups.items()
    )
    left_out = len(flat) - len(shown)
    return (
        '<p class="muted">The effective config: the settings that apply to this run'
        + (
            f" (the {left_out} others, which do not change it, are in config.toml)"
            if left_out
            else ""
        )
        + f"; <code>torchwork run --config {_e(str(run.path / CONFIG))}</code> repeats the "
        "run.</p>"
        f'<div class="config">{tables}</div>'
        f"<details><summary>config.toml as written</summary><pre>{_e(run.config_text)}</pre>"
        "</details>"
    )


def _versions_section(s: Summary) -> str:
    versions = s.get("versions") or {}
    rows = "".join(
        f"<tr><th>{_e(str(k))}</th><td><code>{_e(str(v))}</code></td></tr>"
        for k, v in versions.items()
    )
    table = _scroll(f'<table class="narrow"><tbody>{rows}</tbody></table>') if rows else ""
    return f'{table}<p class="muted">Page written by torchwork {_e(__version__)}.</p>'


# --- Formatting ---------------------------------------------------------------------------


def _epoch(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _value(value: Any) -> str:
    if value is None:
        return "?"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _converged(s: Summary, flat: dict[str, Any]) -> str:
    tol = flat.get("train.tol")
    if not tol:
        return "not checked (tol 0: every epoch runs)"
    rule = f"the training loss improved by no more than {_value(tol)} for {_value(flat.get('train.tol_epochs'))} epochs"
    return f"yes: {rule}" if s.get("converged") else f"no (stops when {rule})"


def _chosen(s: Summary, flat: dict[str, Any], name: str, shown: str | None = None) -> str:
    """A training setting, and why it was chosen when it was auto."""
    value = shown if shown is not None else _value(flat.get(f"train.{name}"))
    why = ((s.get("training") or {}).get("chosen") or {}).get(name)
    return f"{value} (auto: {why})" if why else value


def _reference_name(s: Summary) -> str:
    return "closed-form" if s.get("task") == "regression" else "majority class"
