"""The run folder: where it is, what goes in it, and the summary written at the end."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from torchwork.errors import RunFolderError
from torchwork.fileio import write_text_atomic

# Every name a run writes; `--force` clears exactly these, nothing else in the folder.
RUN_FILES = (
    "config.toml",
    "metrics.csv",
    "summary.json",
    "model.safetensors",
    "model.pth",
    "predictions.csv",
    "checkpoint-last.pt",
    "checkpoint-best.pt",
    "report.html",
)
RUN_FOLDERS = ("plots", "tensorboard")


def resolve_run_dir(out: str, force: bool) -> Path:
    """Choose the run folder and check it may be written, without creating anything.

    An empty `out` means a new timestamped folder under runs/. An existing non-empty folder
    is refused unless `force`.
    """
    if not out:
        base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        return path
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"--out {path} is a file, not a folder: choose another --out")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise RunFolderError(
            f"run folder {path} already exists and is not empty: choose another --out, "
            "or add --force to overwrite it"
        )
    return path


def create_run_dir(path: Path) -> Path:
    """Create the run folder (and plots/), clearing earlier torchwork results in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            (path / name).unlink(missing_ok=True)
        for name in RUN_FOLDERS:
            if (path / name).is_dir():
                shutil.rmtree(path / name)
    except OSError as e:
        raise RunFolderError(f"cannot create run folder {path}: {e.strerror or e}") from None
    return path


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(_finite(data), indent=2) + "\n")


def _finite(value: Any) -> Any:
    # JSON has no NaN or infinity; null says "not defined" (for example R^2 of a constant).
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


HEADINGS = {"mae": "MAE", "mse": "MSE", "rmse": "RMSE", "r2": "R^2", "roc_auc": "ROC AUC"}


def format_metrics_table(
    metrics: dict[str, dict[str, float]],
    reference: dict[str, dict[str, float]] | None = None,
    reference_name: str = "closed-form",
) -> str:
    """Learned (and reference) metrics per split, one row each, aligned."""
    names = list(next(iter(metrics.values())))
    header = f"  {'split':<6} {'model':<12}" + "".join(f"{HEADINGS.get(n, n):>12}" for n in names)
    lines = [header]
    for split_name, values in metrics.items():
        rows = [("learned", values)]
        if reference is not None:
            rows.append((reference_name, reference.get(split_name, {})))
        for label, row in rows:
            cells = "".join(f"{_num(row.get(n)):>12}" for n in names)
            lines.append(f"  {split_name:<6} {label:<12}{cells}")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.6f}" if abs(value) < 1e4 else f"{value:.4g}"
