"""The metrics as a text table for the terminal, in ASCII (R^2, not R²)."""

from __future__ import annotations

import math
from typing import Any

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


def format_spread(result: dict[str, Any]) -> str:
    """Cross-validation: the mean +/- standard deviation of every metric over the fits, one
    row per split."""
    mean, std = result["mean"], result["std"]
    if not mean:
        return "   (no metrics: the fits had no validation or test rows)"
    names = list(next(iter(mean.values())))
    header = f"  {'split':<6}" + "".join(f"{HEADINGS.get(n, n):>22}" for n in names)
    lines = [f"   Over {len(result['fits'])} fits, mean +/- standard deviation:", header]
    for split, values in mean.items():
        cells = "".join(f"{f'{values[n]:.4f} +/- {std[split][n]:.4f}':>22}" for n in names)
        lines.append(f"  {split:<6}{cells}")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.6f}" if abs(value) < 1e4 else f"{value:.4g}"
