"""The metrics as text tables for the terminal, in ASCII (R^2, not R²).

Every column is as wide as its widest cell and columns are kept apart by spaces, so no
number, however large, negative or odd (nan, inf), runs into its neighbour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

HEADINGS = {"mae": "MAE", "mse": "MSE", "rmse": "RMSE", "r2": "R^2", "roc_auc": "ROC AUC"}
GAP = "  "  # between two columns
INDENT = "  "  # before every row
NUMBER_WIDTH = 10  # a column of numbers is at least this wide, so that small ones line up


def format_table(rows: Sequence[Sequence[str]], left: int = 1, minimum: int = 0) -> str:
    """Rows of cells (the header first) as aligned text: the first `left` columns aligned
    left (names), the others right (numbers), each as wide as its widest cell and at least
    `minimum`, two spaces between columns.

    >>> print(format_table([["split", "MAE"], ["test", "1.5"]]))
      split  MAE
      test   1.5
    """
    count = max((len(row) for row in rows), default=0)
    widths = [
        max([len(row[i]) for row in rows if i < len(row)] + [minimum if i >= left else 0])
        for i in range(count)
    ]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(widths[i]) if i < left else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append((INDENT + GAP.join(cells)).rstrip())
    return "\n".join(lines)


def format_metrics_table(
    metrics: dict[str, dict[str, float]],
    reference: dict[str, dict[str, float]] | None = None,
    reference_name: str = "closed-form",
) -> str:
    """Learned (and reference) metrics per split, one row each, aligned."""
    names = list(next(iter(metrics.values())))
    rows = [["split", "model", *(HEADINGS.get(n, n) for n in names)]]
    for split_name, values in metrics.items():
        models = [("learned", values)]
        if reference is not None:
            models.append((reference_name, reference.get(split_name, {})))
        for label, row in models:
            rows.append([split_name, label, *(_num(row.get(n)) for n in names)])
    return format_table(rows, left=2, minimum=NUMBER_WIDTH)


def format_spread(result: dict[str, Any]) -> str:
    """Cross-validation: the mean +/- standard deviation of every metric over the fits, one
    row per split."""
    mean, std = result["mean"], result["std"]
    if not mean:
        return "   (no metrics: the fits had no validation or test rows)"
    names = list(next(iter(mean.values())))
    splits = list(mean)
    columns = []
    for n in names:
        means = [_num(mean[split].get(n), 4) for split in splits]
        stds = [_num((std.get(split) or {}).get(n), 4) for split in splits]
        # the mean and the deviation aligned on their own, so that the +/- line up too
        wide_mean, wide_std = max(map(len, means)), max(map(len, stds))
        columns.append(
            [f"{m:>{wide_mean}} +/- {s:>{wide_std}}" for m, s in zip(means, stds, strict=True)]
        )
    rows = [["split", *(HEADINGS.get(n, n) for n in names)]]
    rows += [[split, *(column[i] for column in columns)] for i, split in enumerate(splits)]
    header = f"   Over {len(result['fits'])} fits, mean +/- standard deviation:"
    return header + "\n" + format_table(rows, minimum=NUMBER_WIDTH)


def _num(value: float | None, digits: int = 6) -> str:
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.4g}"
