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

from torchwork import __version__
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
