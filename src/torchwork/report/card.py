"""MODEL_CARD.md: what a run's model is, what it learned from, how well it did and with what
spread, what it was not tested on, and how to make it again, in Markdown that reads on its
own (beside the model file, in a repository, in a review). Written from the run folder, as
report.html is."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torchwork.fileio import write_text_atomic
from torchwork.report.format import (
    HEADINGS,
    _coefficient,
    _decision_sentences,
    _dropped_words,
    _flatten,
    _folder_words,
    _missing_words,
    _settings,
    _source,
    _toml,
)
from torchwork.report.format import _num as _format_num
from torchwork.runfolder import CONFIG, MODEL_CARD, MODEL_SAFETENSORS, RunFolder, read_run_folder

SHOWN_COLUMNS = 20  # a table's columns named one by one; then a count
TASK_WORDS = {
    "regression": "regression",
    "binary": "binary classification",
    "multiclass": "multiclass classification",
}


def write_model_card(run_folder: str | Path) -> Path:
    """Write MODEL_CARD.md into a run folder from what the run wrote; return its path."""
    run = read_run_folder(run_folder)
    path = run.path / MODEL_CARD
    write_text_atomic(path, model_card(run))
    return path


def model_card(run: RunFolder) -> str:
    s, flat = run.summary, _flatten(run.config)
    sections = [
        _heading(run, s, flat),
        _data(s, flat),
        _metrics(s),
        _importance(s),
        _explained(s),
        _not_tested(s, flat),
        _reproducibility(run, s),
    ]
    return "\n\n".join(section.rstrip() for section in sections if section) + "\n"


def _heading(run: RunFolder, s: dict[str, Any], flat: dict[str, Any]) -> str:
    data = s.get("data") or {}
    what = f"`{data.get('target')}` from `{data.get('path')}`" if data else "the built-in line"
    kind = flat.get("model.kind", "?")
    hidden = flat.get("model.hidden")
    shape = (
        f" ({', '.join(map(str, hidden))})" if hidden and kind not in ("linear", "params") else ""
    )
    return (
        f"# Model card: {run.name}\n\n"
        f"A `{kind}` model{shape} for {TASK_WORDS.get(s.get('task'), '?')} of {what}, trained "
        "by torchwork "
        f"{(s.get('versions') or {}).get('torchwork', '?')} with the {s.get('loss', '?')} loss "
        f"and {flat.get('train.optimizer', '?')} for {s.get('epochs_run', '?')} epochs"
        f"{' (stopped early; the best epoch kept)' if s.get('stopped_early') else ''}. "
        f"The model is `{MODEL_SAFETENSORS}` in this folder."
    )


def _data(s: dict[str, Any], flat: dict[str, Any]) -> str:
    data, rows = s.get("data") or {}, s.get("rows") or {}
    lines = ["## Data", ""]
    if data:
        lines.append(f"- Source: `{data.get('path')}`, sha256 `{data.get('sha256') or '?'}`")
        if _source(s) == "folder":
            lines.append(
                f"- A folder of {_folder_words(s)}; the class is the target, "
                f"`{data.get('target') or 'label'}`"
            )
        if "images" in data:  # a folder of images, as runs wrote it before the kinds of data
            grey = data.get("channels") == 1
            lines.append(
                f"- Each image resized to {data.get('image_size')}x{data.get('image_size')} "
                f"{'grey' if grey else 'RGB'}"
            )
        elif _source(s) == "table":
            features = list(data.get("features") or [])
            named = ", ".join(f"`{f}`" for f in features[:SHOWN_COLUMNS])
            more = (
                f" and {len(features) - SHOWN_COLUMNS} more"
                if len(features) > SHOWN_COLUMNS
                else ""
            )
            count = data.get("table_rows")
            columns = (
                f"{len(features)} feature columns ({named}{more}) giving "
                f"{len(data.get('inputs') or [])} model inputs; "
                if features
                else ""
            )
            lines.append(
                f"- {f'{count:,}' if isinstance(count, int) else '?'} rows; {columns}"
                f"target `{data.get('target')}`"
            )
        for block in data.get("columns") or []:
            if isinstance(block, dict) and block.get("about"):
                lines.append(f"- {str(block['about'])[:1].upper()}{str(block['about'])[1:]}")
        for words in (_dropped_words(s), _missing_words(s)):
            if words:
                lines.append(f"- {words}.")
    else:
        lines.append(
            f"- The built-in straight line y = {flat.get('data.weight')} x + {flat.get('data.bias')}"
            f" on [{flat.get('data.start')}, {flat.get('data.end')}) in steps of "
            f"{flat.get('data.step')}, noise {flat.get('data.noise')}"
        )
    split = " / ".join(f"{n:,} {name}" for name, n in rows.items())
    shuffled = "shuffled, seeded by the seed" if flat.get("data.shuffle") else "in file order"
    lines.append(f"- Split: {split} ({shuffled})")
    balance = _class_balance(s)
    if balance:
        lines += ["", "Class balance (rows of each class in each split):", "", balance]
    return "\n".join(lines)


def _class_balance(s: dict[str, Any]) -> str:
    """Each class's rows per split, from the confusion matrices' rows (the true classes)."""
    matrices, labels = s.get("confusion_matrix") or {}, s.get("labels") or []
    if not matrices or not labels:
        return ""
    splits = [name for name, m in matrices.items() if m]
    counts = {name: [sum(row) for row in matrices[name]] for name in splits}
    totals = {name: sum(counts[name]) or 1 for name in splits}
    rows = [
        [str(label)]
        + [f"{counts[name][k]:,} ({counts[name][k] / totals[name]:.1%})" for name in splits]
        for k, label in enumerate(labels)
    ]
    return _table(["class", *splits], rows)


def _metrics(s: dict[str, Any]) -> str:
    metrics = {k: v for k, v in (s.get("metrics") or {}).items() if isinstance(v, dict)}
    lines = ["## Metrics", ""]
    if not metrics:
        return "\n".join([*lines, "No metrics were written."])
    names = list(next(iter(metrics.values())))
    reference = (s.get("reference") or {}).get("metrics") or {}
    rows = []
    for split, values in metrics.items():
        rows.append([split, "this model"] + [_num(values.get(n)) for n in names])
        if isinstance(reference.get(split), dict):
            method = "closed-form" if s.get("task") == "regression" else "majority class"
            rows.append([split, method] + [_num(reference[split].get(n)) for n in names])
    lines.append(_table(["split", "model", *[HEADINGS.get(n, n) for n in names]], rows))
    decision = _decision_sentences(s)
    for key in ("interval", "class_weights", "threshold"):
        if key in decision:
            lines += ["", decision[key] + "."]
    cv = s.get("cross_validation")
    lines.append("")
    if isinstance(cv, dict) and cv.get("mean"):
        fits = len(cv.get("fits") or [])
        how = (
            f"{cv.get('folds')}-fold cross-validation of the train and validation rows"
            if cv.get("folds")
            else "fits of the same split"
        )
        repeats = f", {cv.get('repeats')} times with new seeds" if cv.get("repeats", 1) > 1 else ""
        lines += [
            f"Spread over {fits} fits, {how}{repeats} (mean ± sample standard deviation; "
            "the saved model is trained as the flags say, not one of them):",
            "",
            _table(
                ["split", *[HEADINGS.get(n, n) for n in names]],
                [
                    [split]
                    + [
                        f"{_num(values.get(n))} ± {_num((cv['std'].get(split) or {}).get(n))}"
                        for n in names
                    ]
                    for split, values in cv["mean"].items()
                ],
            ),
        ]
    else:
        lines.append(
            "Spread: not measured (one split, one fit). `--folds 5` fits five models on other "
            "splits and gives every metric a mean and a standard deviation."
        )
    return "\n".join(lines)


def _explained(s: dict[str, Any]) -> str:
    """What pushes the predictions (summary.json's `explained`), a line a group (a class)."""
    explained = s.get("explained")
    if not isinstance(explained, dict) or not explained:
        return ""
    lines = ["## What pushes the predictions", ""]
    for column, part in explained.items():
        if not isinstance(part, dict) or not isinstance(part.get("groups"), dict):
            continue
        groups = part["groups"]
        lines += [f"Of `{column}`, {part.get('title')} ({part.get('measure')}):", ""]
        for label, top in list(groups.items())[:SHOWN_COLUMNS]:
            lines.append(f"- `{label}`: {', '.join(str(g) for g, _ in top[:8]) or '-'}")
        if len(groups) > SHOWN_COLUMNS:
            lines.append(f"- and {len(groups) - SHOWN_COLUMNS} more (summary.json)")
        lines.append("")
    mistakes = s.get("mistakes")
    if isinstance(mistakes, list) and mistakes:
        lines.append(
            f"{len(mistakes)} of its mistakes on the first test rows are in report.html: what "
            "it learned, right or wrong, is above."
        )
    return "\n".join(lines)


def _not_tested(s: dict[str, Any], flat: dict[str, Any]) -> str:
    data, rows = s.get("data") or {}, s.get("rows") or {}
    source = f"`{data.get('path')}`" if data else "the built-in line"
    lines = [
        "## What it was not tested on",
        "",
        f"- Data from another source, time or population than {source}: every number above "
        "comes from its rows alone.",
    ]
    test = rows.get("test", 0)
    accuracy = ((s.get("metrics") or {}).get("test") or {}).get("accuracy")
    if test and isinstance(accuracy, (int, float)) and accuracy >= 1:
        lines.append(
            f"- More than the {test:,} test rows: no mistakes on them still allows an error "
            f"rate of up to about {min(3 / test, 1):.4f} on new rows (the rule of three, 95%)."
        )
    elif test and isinstance(accuracy, (int, float)):
        error = math.sqrt(max(accuracy * (1 - accuracy), 0) / test)
        lines.append(
            f"- More than the {test:,} test rows: the test accuracy {accuracy:.4f} has a "
            f"standard error of about {error:.4f} (binomial) from their number alone."
        )
    elif test:
        lines.append(f"- More than the {test:,} test rows.")
    else:
        lines.append("- Any held-out rows: the run had no test split (`--test 0`).")
    if s.get("labels"):
        shown = ", ".join(f"`{label}`" for label in s["labels"][:SHOWN_COLUMNS])
        lines.append(f"- Anything but the {len(s['labels'])} classes it learned: {shown}.")
    untested = [
        str(b["untested"])
        for b in data.get("columns") or []
        if isinstance(b, dict) and b.get("untested")
    ]
    if "images" in data:  # as runs wrote it before the kinds of data
        lines.append(
            "- Pictures unlike the training folder's (other subjects, framing, light): any "
            f"picture is resized to {data.get('image_size')}x{data.get('image_size')} and read "
            "as the training pictures were."
        )
    elif untested:
        lines += [f"- {line[:1].upper()}{line[1:]}." for line in untested]
    elif data:
        lines.append(
            "- Values outside the training rows' ranges, and text categories the training "
            "rows did not have."
        )
    else:
        lines.append(f"- x outside [{flat.get('data.start')}, {flat.get('data.end')}).")
    if not isinstance(s.get("importance"), dict):
        lines.append("- Which inputs matter: not measured (no test rows, or not a table).")
    calibration = _decision_sentences(s).get("calibration")
    if calibration:
        lines.append(f"- {calibration}; on other data the probabilities may be off again.")
    elif s.get("task") in ("binary", "multiclass"):
        lines.append("- Whether its probabilities are calibrated: not measured (`--calibrate`).")
    return "\n".join(lines)


def _importance(s: dict[str, Any]) -> str:
    importance = s.get("importance")
    if not isinstance(importance, dict):
        return ""
    metric = HEADINGS.get(importance.get("metric"), importance.get("metric"))
    rows = [
        [str(c.get("column")), f"{_num(c.get('mean'))} ± {_num(c.get('std'))}"]
        for c in (importance.get("columns") or [])[:SHOWN_COLUMNS]
    ]
    lines = [
        "## Which inputs matter",
        "",
        f"Permutation importance: the drop in test {metric} when a column is shuffled "
        f"({importance.get('repeats')} times, across {importance.get('rows'):,} test rows), "
        "mean ± standard deviation:",
        "",
        _table(["column", f"drop in {metric}"], rows),
    ]
    learned = (s.get("coefficients") or {}).get("learned") or {}
    closed = (s.get("coefficients") or {}).get("closed_form") or {}
    if learned.get("inputs"):
        names = [*learned["inputs"], "(bias)"]
        header = ["input", "learned", *(["closed-form"] if closed else [])]
        table = []
        for i, name in enumerate(names):
            cells = [_coefficient(learned, i)] + ([_coefficient(closed, i)] if closed else [])
            table.append([name, *[_num(v) for v in cells]])
        lines += ["", "Coefficients in the columns' own units:", "", _table(header, table)]
    return "\n".join(lines)


def _reproducibility(run: RunFolder, s: dict[str, Any]) -> str:
    flat = _flatten(run.config)
    shown = _settings(s, flat)
    settings = s.get("reproducibility") or {}
    versions = s.get("versions") or {}
    command = s.get("command")
    lines = [
        "## Reproducibility",
        "",
        f"- Command: `{command}`" if command else "- Started from the Python API.",
        f"- The same run again: `torchwork run --config {run.path / CONFIG} --out NEW_FOLDER` "
        "(every choice is in the config, so the same machine gives the same bits).",
        f"- Seed {s.get('seed', '?')}, device {s.get('device', '?')}",
    ]
    processes = settings.get("processes", 1)
    if isinstance(processes, int) and processes > 1:
        lines.append(
            f"- Trained data-parallel in {processes} processes: the command above repeats these "
            f"bits; one process, or another number of them, trains a slightly different model "
            "(the gradients are summed in another order)."
        )
    if settings:
        lines.append("- torch: " + ", ".join(f"{name} {value}" for name, value in settings.items()))
    if versions:
        lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    left_out = len(flat) - len(shown)
    lines += [
        "",
        "The settings that apply to this run"
        + (
            f" (`config.toml` holds them and the {left_out} others, which do not change it):"
            if left_out
            else " (`config.toml`):"
        ),
        "",
        "```toml",
        _settings_toml(shown),
        "```",
    ]
    return "\n".join(lines)


def _settings_toml(settings: dict[str, Any]) -> str:
    """Flattened settings (section.key) as TOML, top-level keys first as config.toml has."""
    groups: dict[str, list[str]] = {}
    for name, value in settings.items():
        group, _, key = name.rpartition(".")
        groups.setdefault(group, []).append(f"{key} = {_toml(value)}")
    blocks = ["\n".join(groups.pop("", []))] if "" in groups else []
    blocks += [f"[{group}]\n" + "\n".join(keys) for group, keys in groups.items()]
    return "\n\n".join(blocks)


def _num(value: Any) -> str:
    return _format_num(value, 4)


def _table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)
