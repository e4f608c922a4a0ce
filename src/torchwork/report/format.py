"""What the report page and the comparison share: the run's values as text, and the page
around them. Private to torchwork.report (the leading underscores say so)."""

from __future__ import annotations

import base64
import functools
import html
import json
import math
import time
from importlib import resources
from pathlib import Path
from typing import Any

from torchwork import __version__, registry
from torchwork.runfolder import SUMMARY, Summary

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


# Which settings apply to which runs (section.key of config.toml). The line's settings make
# the built-in line; a table's say how it is read and its columns encoded; a folder of class
# folders has neither. A kind's settings (registry.KINDS) apply where a column is of it.
LINE_SETTINGS = ("data.weight", "data.bias", "data.start", "data.end", "data.step", "data.noise")
TABLE_SETTINGS = (
    "data.target",
    "data.features",
    "data.exclude",
    "data.kinds",
    "data.dropna",
    "data.na_values",
    "data.categorical",
    "data.scale",
    "data.scale_target",
    "data.max_categories",
    "data.delimiter",
    "data.decimal",
    "data.encoding",
    "data.split_by_rows",
)
SHOWN_CLASSES = 20  # a folder's classes counted one by one; then a count


def _source(s: Summary) -> str:
    """What the run learned from: "line" (the built-in line), "table", or "folder" (of class
    folders, which stands for a table but is not read as one)."""
    data = s.get("data")
    if not isinstance(data, dict) or not data:
        return "line"
    if data.get("folder") or "images" in data:  # "images": a folder, as runs wrote it before
        return "folder"
    return "table"


def _kinds(s: Summary) -> set[str]:
    """The kinds of data of the run's columns (summary.json's data.columns)."""
    data = s.get("data") or {}
    kinds = {str(b.get("kind")) for b in data.get("columns") or [] if isinstance(b, dict)}
    return kinds | ({"image"} if "images" in data else set())


def _settings(s: Summary, flat: dict[str, Any]) -> dict[str, Any]:
    """The settings of the flattened config that apply to this run, in the config's order:
    the line's only for the line, a table's only for a table, a kind's only where a column is
    of that kind, a model's, an optimizer's and a task's only where they are used. The report
    and the card show these; config.toml holds them all."""
    source, kinds, task = _source(s), _kinds(s), s.get("task")
    optimizer = str((s.get("training") or {}).get("optimizer") or flat.get("train.optimizer"))
    model = registry.MODELS.get(str(flat.get("model.kind")))
    rules: dict[str, bool] = dict.fromkeys(TABLE_SETTINGS, source == "table")
    rules |= dict.fromkeys(LINE_SETTINGS, source == "line")
    for kind, entry in registry.KINDS.items():
        rules |= {name: rules.get(name, False) or kind in kinds for name in entry.settings}
    rules |= {
        "data.path": source != "line",
        "data.task": source != "line",  # the line is a regression
        "data.scale_target": source == "table" and task == "regression",
        "data.skip_bad": any(registry.KINDS[k].suffixes for k in kinds if k in registry.KINDS),
        "model.hidden": model is None or model.line is None,  # a line's model has no layers
        "train.momentum": "momentum" in getattr(registry.OPTIMIZERS.get(optimizer), "options", ()),
        "train.tol_epochs": bool(flat.get("train.tol")),
        "train.repeats": isinstance(s.get("cross_validation"), dict)
        or flat.get("train.repeats") != 1,
        "train.class_weight": task != "regression",
        "interval": task == "regression",
        "calibrate": task != "regression",
        "threshold": task == "binary",
        "threshold_metric": task == "binary" and flat.get("threshold") == "auto",
    }
    return {name: value for name, value in flat.items() if rules.get(name, True)}


def _dropped_words(s: Summary) -> str:
    """What --dropna dropped, in a sentence, with the warning the run gave (more than a tenth
    of the rows); '' when it dropped nothing."""
    dropped = (s.get("data") or {}).get("dropped")
    if not isinstance(dropped, dict) or not dropped.get("rows"):
        return ""
    rows, total = int(dropped["rows"]), int(dropped.get("of") or 0)
    share = rows / total if total else 1.0
    columns = ", ".join(
        f"{name} ({count:,})" for name, count in list((dropped.get("columns") or {}).items())[:10]
    )
    words = (
        f"--dropna dropped {rows:,} of {total:,} rows ({share:.0%}) with empty or NaN cells"
        + (f", in {columns}" if columns else "")
        + f"; the model learned from, and was tested on, the {total - rows:,} left"
    )
    if dropped.get("warned"):
        words += (
            ". Warning: more than a tenth of the rows were dropped, and those left may not be "
            "like them: fill in the cells where you can"
        )
    return words


def _missing_words(s: Summary) -> str:
    """The empty cells a run kept, by column, in a sentence ('' for none)."""
    missing = (s.get("data") or {}).get("missing")
    if not isinstance(missing, dict) or not missing:
        return ""
    shown = list(missing.items())[:10]
    listed = ", ".join(f"{name} ({count:,})" for name, count in shown)
    more = f" and {len(missing) - 10} more columns" if len(missing) > 10 else ""
    return (
        f"Empty cells, kept: {listed}{more}. A number's empty cell is its training mean, with an "
        "input saying it was empty; a category's is a category of its own; a text's, a "
        "document of no words"
    )


def _class_counts(s: Summary) -> dict[str, int]:
    """The rows of each class over the splits, from the confusion matrices' rows (the true
    classes); {} for a regression."""
    labels, matrices = s.get("labels") or [], s.get("confusion_matrix") or {}
    counts = dict.fromkeys(map(str, labels), 0)
    for matrix in matrices.values():
        for label, row in zip(labels, matrix or [], strict=False):
            counts[str(label)] += sum(row)
    return counts if any(counts.values()) else {}


def _folder_words(s: Summary) -> str:
    """A folder of class folders in words: "24 images in 2 class folders, 12 per class"."""
    data = s.get("data") or {}
    noun = str(data.get("folder") or "images")
    total = data.get("table_rows", data.get("images"))
    counts = _class_counts(s)
    words = f"{total:,} {noun}" if isinstance(total, int) else noun
    if not counts:
        return words + ", one sub-folder per class"
    words += f" in {len(counts)} class folders"
    used = sum(counts.values())
    if used != total:
        words += f" ({used:,} of them in the splits)"
    if len(set(counts.values())) == 1:
        return words + f", {next(iter(counts.values())):,} per class"
    each = ", ".join(f"{label} {n:,}" for label, n in list(counts.items())[:SHOWN_CLASSES])
    more = f" and {len(counts) - SHOWN_CLASSES} more" if len(counts) > SHOWN_CLASSES else ""
    return f"{words}: {each}{more}"


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _num(value: Any, digits: int = 6) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "n/a"
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.4g}"


def _rounded(text: str, digits: int = 4) -> str:
    """A number a run wrote as text (predictions.csv), for reading: `digits` decimals as
    `_num` shows them, a tiny one (0.0000025) in scientific notation to as many significant
    digits; text that is not a finite number as it is."""
    try:
        value = float(text)
    except ValueError:
        return text
    if not math.isfinite(value):
        return text
    if value != 0 and abs(value) < 10**-digits:
        return f"{value:.{digits - 1}e}"
    return _num(value, digits)


def _coefficient(values: dict[str, Any], i: int) -> Any:
    """summary.json coefficients: input i's weight for the first output, or the bias past
    the last input."""
    weight = (values.get("weight") or [[]])[0]
    return weight[i] if i < len(weight) else (values.get("bias") or [None])[0]


def _decision_sentences(s: Summary) -> dict[str, str]:
    """The fitted decision rule in plain sentences, for the report and the card: what
    --class-weight, --threshold, --calibrate and --interval set, by key, where they did."""
    sentences = {}
    if isinstance(s.get("class_weights"), dict):
        weights = ", ".join(f"{k} {_num(v, 4)}" for k, v in s["class_weights"].items())
        sentences["class_weights"] = f"Class weights in the loss: {weights}"
    if isinstance(s.get("threshold"), dict):
        positive = (s.get("labels") or ["", "?"])[-1]
        sentences["threshold"] = (
            f"Threshold: a row is {positive} at probability {s['threshold'].get('value')} or "
            f"more (chosen by {s['threshold'].get('chosen_by')})"
        )
    calibration = s.get("calibration")
    if isinstance(calibration, dict):
        split = (calibration.get("reliability") or {}).get("split", "test")
        cal = (calibration.get("splits") or {}).get(split) or {}
        sentences["calibration"] = (
            f"Calibrated: the logits divided by the temperature "
            f"{_num(calibration.get('temperature'), 4)}, fitted on the "
            f"{calibration.get('val_rows')} validation rows; {split} expected calibration error "
            f"{_num(cal.get('ece_before'), 4)} → {_num(cal.get('ece_after'), 4)}, Brier score "
            f"{_num(cal.get('brier_before'), 4)} → {_num(cal.get('brier_after'), 4)}"
            + "".join(f". Warning: {w}" for w in calibration.get("warnings") or [])
        )
    interval = s.get("interval")
    if isinstance(interval, dict):
        covered, level = interval.get("test_coverage"), float(interval.get("level") or 0)
        sentences["interval"] = (
            f"Prediction intervals: prediction ± {_num(interval.get('half_width'), 4)} for "
            f"{level:.0%} coverage (split-conformal, fitted on the {interval.get('val_rows')} "
            "validation rows)"
            + (f"; test coverage {covered:.1%}" if isinstance(covered, float) else "")
        )
    return sentences


def _toml(value: Any) -> str:
    """A config value as config.toml writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def _seconds(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "?"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{int(value // 60)} min {value % 60:.0f} s"


def _epochs(s: Summary, flat: dict[str, Any]) -> str:
    run, planned = s.get("epochs_run"), flat.get("train.epochs")
    if run is None:
        return "?"
    if (s.get("stopped_early") or s.get("converged")) and planned is not None:
        return f"{run} of {planned}"
    return str(run)


def _final_metrics(s: Summary) -> tuple[str, dict[str, Any]]:
    metrics = {k: v for k, v in (s.get("metrics") or {}).items() if isinstance(v, dict)}
    if not metrics:
        return "", {}
    split = "test" if "test" in metrics else list(metrics)[-1]
    return split, metrics[split]


def _finished(path: Path) -> str:
    try:
        stamp = (path / SUMMARY).stat().st_mtime
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
{_css()}
</style>
</head>
<body>
<main>
{content}
</main>
</body>
</html>
"""


@functools.cache
def _css() -> str:
    """style.css, shipped beside this module; inlined so that the page stands alone."""
    text = resources.files("torchwork.report").joinpath("style.css").read_text(encoding="utf-8")
    return text.removesuffix("\n")
