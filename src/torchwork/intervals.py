"""Error bars on predictions: split-conformal intervals for regression (`--interval 0.9`).

Fitted on the validation split, which training does not learn from: the half-width is the
k-th smallest absolute error there, k = ceil((n + 1) * level) of its n rows (Vovk et al.;
Lei et al. 2018, "Distribution-free predictive inference for regression"). Then, for rows
exchangeable with the validation rows, prediction ± half-width holds the true value with
probability at least `level`. The half-width goes with the model's preprocessing
(kinds.encoder.Encoder.interval), so `predict`, `serve` and exports give the same bounds.
"""

from __future__ import annotations

import math

import torch

from torchwork.errors import ConfigError
from torchwork.registry import Task


def rows_needed(level: float) -> int:
    """The fewest validation rows that give a finite interval at `level`."""
    return math.ceil(level / (1 - level) - 1e-9)


def check_interval(level: float, task: Task, val_rows: int, table: bool) -> None:
    """An interval is for a table's regression, fitted on enough validation rows; else one
    line."""
    if not level:
        return
    if not table:
        raise ConfigError("--interval is for a table's regression: give --data FILE.csv")
    if task != "regression":
        raise ConfigError(
            f"--interval is for regression; this is a {task} task: drop --interval "
            "(class probabilities already say how sure each prediction is)"
        )
    if val_rows < rows_needed(level):
        raise ConfigError(
            f"--interval {level:g} needs at least {rows_needed(level)} validation rows to fit on "
            f"(the split has {val_rows}): give a larger --val or a lower --interval"
        )


def _errors(predictions: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    return (truth.reshape(-1).double() - predictions.reshape(-1).double()).abs()


def half_width(predictions: torch.Tensor, truth: torch.Tensor, level: float) -> float:
    """The split-conformal half-width: the ceil((n + 1) * level)-th smallest absolute error."""
    errors = torch.sort(_errors(predictions, truth))
    n = len(errors.values)
    k = math.ceil((n + 1) * level - 1e-9)
    if not 1 <= k <= n:
        raise ConfigError(f"--interval {level:g} needs at least {rows_needed(level)} rows")
    return float(errors.values[k - 1])


def coverage(predictions: torch.Tensor, truth: torch.Tensor, width: float) -> float:
    """The share of rows whose true value lies within prediction ± width."""
    inside = _errors(predictions, truth) <= width
    return float(inside.double().mean()) if len(inside) else float("nan")
