"""The run folder as one web page (report.html), and several runs side by side.

Every page is a single self-contained file: pictures are base64 data URIs, the CSS is
inline, there is no JavaScript and nothing is fetched, so it opens anywhere, offline, and
can be mailed or attached as it is. Only the files a run wrote are read; torch is not
imported (matplotlib only when `compare_runs` draws its picture).

>>> write_report("runs/line")  # doctest: +SKIP
PosixPath('runs/line/report.html')
>>> print(compare_runs(["lr-0.01", "lr-0.1"], out_png="compare.png"))  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchwork import __version__
from torchwork.config import parse_toml
from torchwork.errors import RunFolderError
from torchwork.fileio import write_text_atomic

REPORT_NAME = "report.html"
PREVIEW_ROWS = 10  # predictions.csv rows shown; the file itself can have millions
HISTORY_ROWS = 40  # metrics.csv rows shown in full; longer histories show both ends

HEADINGS = {
    "mae": "MAE",
    "mse": "MSE",
    "rmse": "RMSE",
    "r2": "R²",
    "roc_auc": "ROC AUC",
    "f1": "F1",
    "train_loss": "Train loss",
    "val_loss": "Validation loss",
    "test_loss": "Test loss",
}
TEXT_HEADINGS = {"r2": "R^2"}  # the terminal keeps to ASCII, as report.format_metrics_table
# The pictures in the order the course meets them; any others follow by name.
PICTURES = {
    "loss_curves": "Training and test loss curves",
    "predictions_before": "Predictions before training",
    "predictions_after": "Predictions after training",
    "predicted_vs_actual": "Predicted vs actual (test data)",
    "residuals": "Residuals (test data)",
    "confusion_matrix": "Confusion matrix (test data)",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class RunFolder:
    """What a finished run wrote, read back as plain values."""

    path: Path
    config: dict[str, Any]  # config.toml, nested as in the file
    config_text: str
    summary: dict[str, Any]  # summary.json
    history: list[dict[str, float]]  # metrics.csv rows, empty cells left out

    @property
    def name(self) -> str:
        return self.path.resolve().name or str(self.path)


def read_run_folder(folder: str | Path) -> RunFolder:
    """Read config.toml, summary.json and metrics.csv of a run folder, or say what is wrong."""
    path = Path(folder)
    if not path.is_dir():
        raise RunFolderError(
            f"run folder {path} does not exist: give a folder written by torchwork run"
        )
    for name in ("summary.json", "config.toml"):
        if not (path / name).is_file():
            raise RunFolderError(
                f"{path} is not a finished run folder (it has no {name}): give a folder "
                "written by torchwork run, or resume that run to finish it"
            )
    summary_text = _read_text(path / "summary.json")
    try:
        summary = json.loads(summary_text)
    except json.JSONDecodeError as e:
        raise RunFolderError(
            f"{path / 'summary.json'} is not valid JSON ({e.msg}, line {e.lineno}): "
            "run the training again to rewrite it"
        ) from None
    if not isinstance(summary, dict) or not isinstance(summary.get("metrics"), dict):
        raise RunFolderError(
            f"{path / 'summary.json'} is not a torchwork summary (it has no metrics): "
            "give a folder written by torchwork run"
        )
    config_text = _read_text(path / "config.toml")
    config = parse_toml(config_text, str(path / "config.toml"))
    history = _read_history(path / "metrics.csv") if (path / "metrics.csv").exists() else []
    return RunFolder(path, config, config_text, summary, history)


def write_report(run_folder: str | Path) -> Path:
    """Write report.html into a run folder from what the run wrote; return its path.

    The page shows the config, the data split, the metrics beside the reference (closed-form
    least squares, or the majority class), learned against true parameters for the line,
    the confusion matrix, every picture in plots/, timings and versions.
    """
    run = read_run_folder(run_folder)
    path = run.path / REPORT_NAME
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
    sections.append(("pictures", "Pictures", _pictures_section(run.path / "plots")))
    sections.append(("training", "Training", _training_section(run)))
    predictions = run.path / "predictions.csv"
    if predictions.is_file():
        rows = (s.get("data") or {}).get("table_rows")
        sections.append(("predictions", "Predictions", _predictions_section(predictions, rows)))
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


def compare_runs(
    folders: Sequence[str | Path],
    out_png: str | Path | None = None,
    out_html: str | Path | None = None,
) -> str:
    """Compare run folders: the config keys that differ and each run's final metrics.

    Returns the comparison as a text table for the terminal. With `out_png`, also draws
    every run's train and test loss curves on one picture; with `out_html`, writes a
    self-contained page holding the table and the picture.
    """
    if len(folders) < 2:
        raise RunFolderError(
            f"compare needs at least two run folders (got {len(folders)}): "
            "give two or more folders written by torchwork run"
        )
    runs = [read_run_folder(f) for f in folders]
    names = _run_names(runs)
    rows = _comparison_rows(runs)
    text = _text_table(names, rows)
    png = None
    if out_png is not None or out_html is not None:
        figure = _loss_overlay(runs, names)
        if out_png is not None:
            from torchwork.plots import save_figure

            save_figure(figure, out_png)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        png = buffer.getvalue()
    if out_html is not None:
        write_text_atomic(out_html, _compare_html(runs, names, rows, png))
    return text


def _compare_html(
    runs: list[RunFolder], names: list[str], rows: list[tuple[str, list[str]]], png: bytes | None
) -> str:
    listing = "".join(
        f"<li><b>{_e(name)}</b>: {_e(str(run.path))} ({_e(_finished(run.path))})</li>"
        for name, run in zip(names, runs, strict=True)
    )
    head = "".join(f'<th class="num">{_e(n)}</th>' for n in names)
    body = []
    for label, values in rows:
        if not values:
            body.append(f'<tr class="group"><th colspan="{len(names) + 1}">{_e(label)}</th></tr>')
            continue
        cells = "".join(f'<td class="num">{_e(v)}</td>' for v in values)
        label = {v: HEADINGS[k] for k, v in TEXT_HEADINGS.items()}.get(label, label)
        body.append(f"<tr><th>{_e(label)}</th>{cells}</tr>")
    table = _scroll(
        f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )
    picture = _figure(png, "Training and test loss curves of every run") if png is not None else ""
    title = f"torchwork: {len(runs)} runs compared"
    content = (
        f"<header><h1>{_e(title)}</h1></header>\n"
        f'<section id="runs"><h2>Runs</h2><ul>{listing}</ul></section>\n'
        f'<section id="table"><h2>What differs, and the final metrics</h2>\n'
        f'<p class="muted">Only config keys whose values differ are shown.</p>{table}</section>\n'
        f'<section id="curves"><h2>Loss curves</h2><div class="figures one">{picture}</div>'
        "</section>"
    )
    return _page(title, content)


# --- Reading ------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise RunFolderError(
            f"cannot read {path} ({reason}): check the file, or run the training again"
        ) from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise RunFolderError(
            f"cannot read {path} ({e.strerror or e}): check the file, or draw the plots again"
        ) from None


def _read_history(path: Path) -> list[dict[str, float]]:
    rows = []
    for n, row in enumerate(csv.DictReader(io.StringIO(_read_text(path))), start=2):
        record = {}
        for key, value in row.items():
            if key is None or value in ("", None):
                continue
            try:
                record[key] = float(value)
            except ValueError:
                raise RunFolderError(
                    f"{path} line {n} has '{value}' in column {key}, not a number: "
                    "run the training again to rewrite it"
                ) from None
        rows.append(record)
    return rows


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


# --- The report's sections ----------------------------------------------------------------


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


def _data_section(run: RunFolder) -> str:
    s, flat = run.summary, _flatten(run.config)
    data = s.get("data")
    if isinstance(data, dict):
        names = [str(f) for f in data.get("features") or []]
        features = ", ".join(names[:20]) + (
            f" and {len(names) - 20} more" if len(names) > 20 else ""
        )
        source = (
            f"<p>The table <code>{_e(str(data.get('path', '')))}</code>: target "
            f"<code>{_e(str(data.get('target', '')))}</code>, features {_e(features)}.</p>"
        )
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


def _metrics_section(s: dict[str, Any]) -> str:
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
    return table + note


def _parameters_section(s: dict[str, Any]) -> str:
    learned = s.get("learned") or {}
    parts = []
    true = s.get("true")
    if isinstance(true, dict):
        reference = s.get("reference") or {}
        line = _learned_line(learned)
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


def _learned_line(learned: dict[str, Any]) -> tuple[float, float] | None:
    for weight, bias in (("weights", "bias"), ("linear_layer.weight", "linear_layer.bias")):
        w, b = learned.get(weight), learned.get(bias)
        if isinstance(w, list) and isinstance(b, list) and len(w) == 1 and len(b) == 1:
            return w[0], b[0]
    return None


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


def _pictures_section(folder: Path) -> str:
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
        caption = PICTURES.get(png.stem, png.stem.replace("_", " "))
        figures.append(_figure(data, caption, f"plots/{png.name}"))
    return f'<div class="figures">{"".join(figures)}</div>'


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


def _predictions_section(path: Path, rows: int | None = None) -> str:
    # Only the first rows are read when the summary says how many there are: the file
    # holds every row of the table, which may be millions.
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
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(_short(cell))}</td>" for cell in row) + "</tr>"
        for row in preview
    )
    table = _scroll(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return (
        f"<p>predictions.csv holds every row of the table ({count} rows) with its split, "
        f"target and prediction; the first {len(preview)} are shown here.</p>{table}"
    )


def _config_section(run: RunFolder) -> str:
    groups: dict[str, list[str]] = {}
    for name, value in _flatten(run.config).items():
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
    return (
        f'<p class="muted">The effective config; <code>torchwork run --config '
        f"{_e(str(run.path / 'config.toml'))}</code> repeats the run.</p>"
        f'<div class="config">{tables}</div>'
        f"<details><summary>config.toml as written</summary><pre>{_e(run.config_text)}</pre>"
        "</details>"
    )


def _versions_section(s: dict[str, Any]) -> str:
    versions = s.get("versions") or {}
    rows = "".join(
        f"<tr><th>{_e(str(k))}</th><td><code>{_e(str(v))}</code></td></tr>"
        for k, v in versions.items()
    )
    table = _scroll(f'<table class="narrow"><tbody>{rows}</tbody></table>') if rows else ""
    return f'{table}<p class="muted">Page written by torchwork {_e(__version__)}.</p>'


# --- Comparing ----------------------------------------------------------------------------


def _run_names(runs: list[RunFolder]) -> list[str]:
    names = [r.name for r in runs]
    if len(set(names)) < len(names):
        names = [str(r.path) for r in runs]
    if len(set(names)) < len(names):
        names = [f"{n} ({i + 1})" for i, n in enumerate(names)]
    return names


def _comparison_rows(runs: list[RunFolder]) -> list[tuple[str, list[str]]]:
    """(label, one value per run) rows; a label with no values is a group heading."""
    missing = object()
    flats = [_flatten(r.config) for r in runs]
    keys: list[str] = []
    for flat in flats:
        keys += [k for k in flat if k not in keys]
    differing = [k for k in keys if len({_toml(f.get(k, missing)) for f in flats}) > 1]
    rows: list[tuple[str, list[str]]] = [("config (keys that differ)", [])]
    if differing:
        rows += [(k, [_plain(f.get(k, missing), missing) for f in flats]) for k in differing]
    else:
        rows.append(("(none: the configs are the same)", ["" for _ in runs]))

    finals = [_final_metrics(r.summary) for r in runs]
    names: list[str] = []
    for _, metrics in finals:
        names += [n for n in metrics if n not in names]
    rows.append(("final metrics", []))
    rows.append(("split", [split or "-" for split, _ in finals]))
    rows += [
        (
            TEXT_HEADINGS.get(n, HEADINGS.get(n, n)),
            [_num(m[n]) if n in m else "-" for _, m in finals],
        )
        for n in names
    ]
    rows.append(("training", []))
    rows.append(("epochs run", [_epochs(r.summary, f) for r, f in zip(runs, flats, strict=True)]))
    rows.append(
        ("stopped early", ["yes" if r.summary.get("stopped_early") else "no" for r in runs])
    )
    rows.append(("training time", [_seconds(r.summary.get("seconds")) for r in runs]))
    return rows


def _text_table(names: list[str], rows: list[tuple[str, list[str]]]) -> str:
    labels = [("  " + label) if values else label for label, values in rows]
    first = max(len(label) for label in labels) + 2
    widths = [
        max(len(name), *(len(values[i]) for _, values in rows if values)) + 2
        for i, name in enumerate(names)
    ]
    lines = [" " * first + "".join(f"{n:>{w}}" for n, w in zip(names, widths, strict=True))]
    for label, (_, values) in zip(labels, rows, strict=True):
        if not values:
            lines.append(label)
            continue
        cells = "".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True))
        lines.append(f"{label:<{first}}{cells}".rstrip())
    return "\n".join(lines)


def _loss_overlay(runs: list[RunFolder], names: list[str]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 7))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (run, name) in enumerate(zip(runs, names, strict=True)):
        colour = f"C{i % 10}"
        for column, style, label in (("train_loss", "-", "train"), ("test_loss", "--", "test")):
            points = [(r["epoch"], r[column]) for r in run.history if "epoch" in r and column in r]
            if points:
                epochs, losses = zip(*points, strict=True)
                ax.plot(epochs, losses, style, color=colour, label=f"{name} {label} loss")
    ax.set_title("Training and test loss curves")
    ax.set_ylabel("Loss")
    ax.set_xlabel("Epochs")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return fig


# --- Formatting ---------------------------------------------------------------------------


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _num(value: Any, digits: int = 6) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "n/a"
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.4g}"


def _epoch(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _value(value: Any) -> str:
    if value is None:
        return "?"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _toml(value: Any) -> str:
    """A config value as config.toml writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def _plain(value: Any, missing: object) -> str:
    # For the terminal: strings without quotes unless empty, a missing key as "-".
    if value is missing:
        return "-"
    if isinstance(value, str):
        return value or '""'
    return _toml(value)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _seconds(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "?"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{int(value // 60)} min {value % 60:.0f} s"


def _epochs(s: dict[str, Any], flat: dict[str, Any]) -> str:
    run, planned = s.get("epochs_run"), flat.get("train.epochs")
    if run is None:
        return "?"
    if (s.get("stopped_early") or s.get("converged")) and planned is not None:
        return f"{run} of {planned}"
    return str(run)


def _converged(s: dict[str, Any], flat: dict[str, Any]) -> str:
    tol = flat.get("train.tol")
    if not tol:
        return "not checked (tol 0: every epoch runs)"
    rule = f"the training loss improved by no more than {_value(tol)} for {_value(flat.get('train.tol_epochs'))} epochs"
    return f"yes: {rule}" if s.get("converged") else f"no (stops when {rule})"


def _chosen(s: dict[str, Any], flat: dict[str, Any], name: str, shown: str | None = None) -> str:
    """A training setting, and why it was chosen when it was auto."""
    value = shown if shown is not None else _value(flat.get(f"train.{name}"))
    why = ((s.get("training") or {}).get("chosen") or {}).get(name)
    return f"{value} (auto: {why})" if why else value


def _reference_name(s: dict[str, Any]) -> str:
    return "closed-form" if s.get("task") == "regression" else "majority class"


def _final_metrics(s: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    metrics = {k: v for k, v in (s.get("metrics") or {}).items() if isinstance(v, dict)}
    if not metrics:
        return "", {}
    split = "test" if "test" in metrics else list(metrics)[-1]
    return split, metrics[split]


def _finished(path: Path) -> str:
    try:
        stamp = (path / "summary.json").stat().st_mtime
    except OSError:
        return "finished at an unknown time"
    return "finished " + time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def _scroll(table: str) -> str:
    return f'<div class="scroll">{table}</div>'


def _figure(png: bytes, caption: str, source: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    note = f' <span class="muted">{_e(source)}</span>' if source else ""
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
        f"<figcaption>{_e(caption)}{note}</figcaption></figure>"
    )


def _page(title: str, content: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="generator" content="torchwork {_e(__version__)}">
<title>{_e(title)}</title>
<style>
{CSS}
</style>
</head>
<body>
<main>
{content}
</main>
</body>
</html>
"""


CSS = """\
:root { --fg: #1f2328; --muted: #59636e; --bg: #ffffff; --panel: #f6f8fa; --line: #d1d9e0;
  --accent: #0969da; --good: #1a7f37; color-scheme: light dark; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --muted: #9198a1; --bg: #0d1117; --panel: #151b23; --line: #3d444d;
    --accent: #4493f8; --good: #3fb950; }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "Noto Sans", "Liberation Sans", sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 1.5rem 1rem 3rem; }
h1 { font-size: 1.6rem; line-height: 1.25; margin: 0 0 .25rem; overflow-wrap: anywhere; }
h2 { font-size: 1.25rem; margin: 2.25rem 0 .75rem; padding-bottom: .3rem;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 1rem; margin: 1.25rem 0 .5rem; }
p { margin: .5rem 0; }
a { color: var(--accent); }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono",
  monospace; font-size: .875em; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
  padding: .75rem 1rem; overflow-x: auto; }
.muted { color: var(--muted); }
header p { margin: 0 0 .75rem; overflow-wrap: anywhere; }
nav { display: flex; flex-wrap: wrap; gap: .25rem .9rem; font-size: .95rem; }
section#overview h2 { position: absolute; left: -9999px; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(8rem, 1fr));
  gap: .5rem; margin: .75rem 0; }
.fact { background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
  padding: .45rem .75rem; overflow-wrap: anywhere; }
@media (min-width: 600px) { .fact.wide { grid-column: span 2; } }
.fact b { display: block; font-size: .72rem; font-weight: 600; letter-spacing: .04em;
  text-transform: uppercase; color: var(--muted); }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; margin: .5rem 0 1rem;
  border: 1px solid var(--line); border-radius: 6px; max-width: 100%; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums;
  font-size: .95rem; }
.scroll:has(table.narrow) { width: fit-content; }
th, td { padding: .35rem .75rem; text-align: left; white-space: nowrap;
  border-bottom: 1px solid var(--line); vertical-align: top; }
tbody tr:last-child > *, tbody tr:nth-last-child(2) > [rowspan] { border-bottom: 0; }
thead th { background: var(--panel); font-weight: 600; }
tbody th { font-weight: 600; }
.scroll tbody th:first-child { position: sticky; left: 0; background: var(--bg); }
.config { display: grid; gap: 0 1rem;
  grid-template-columns: repeat(auto-fit, minmax(min(100%, 16rem), 1fr)); align-items: start; }
.config .scroll { margin-top: 0; }
.num { text-align: right; }
tr.first > * { border-top: 2px solid var(--line); }
tr.ref td { color: var(--muted); }
.scroll tr.group th { background: var(--panel); color: var(--muted); font-weight: 600; }
tr.total > * { border-top: 2px solid var(--line); }
td.learned { color: var(--good); font-weight: 600; }
table.confusion td { min-width: 3.5rem; }
td.diag { font-weight: 700; }
details { margin: .5rem 0 1rem; }
summary { cursor: pointer; color: var(--accent); }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 30rem), 1fr));
  gap: 1rem; }
.figures.one { grid-template-columns: minmax(0, 56rem); justify-content: center; }
figure { margin: 0; background: #fff; color: #1f2328; border: 1px solid var(--line);
  border-radius: 6px; padding: .5rem; }
figure img { display: block; width: 100%; height: auto; }
figcaption { font-size: .9rem; padding: .35rem .25rem 0; }
figcaption .muted { color: #59636e; }
ul { padding-left: 1.25rem; }
li { overflow-wrap: anywhere; }
@media (max-width: 600px) {
  body { font-size: 15px; }
  main { padding: 1rem .75rem 2rem; }
  h1 { font-size: 1.35rem; }
  th, td { padding: .3rem .5rem; }
}
@media print {
  main { max-width: none; }
  nav, summary { display: none; }
  details > * { display: block; }
  figure { break-inside: avoid; }
}"""
