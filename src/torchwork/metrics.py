"""Regression metrics: pure functions of tensors, returning plain floats."""

from __future__ import annotations

import torch


def _pair(y_pred: torch.Tensor, y_true: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    y_pred = y_pred.detach().reshape(-1).double()
    y_true = y_true.detach().reshape(-1).double()
    if y_pred.shape != y_true.shape:
        raise ValueError(f"predictions have {y_pred.numel()} values but targets {y_true.numel()}")
    return y_pred, y_true


def mae(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """Mean absolute error."""
    p, t = _pair(y_pred, y_true)
    return float((p - t).abs().mean())


def mse(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """Mean squared error."""
    p, t = _pair(y_pred, y_true)
    return float(((p - t) ** 2).mean())


def rmse(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """Root mean squared error."""
    return mse(y_pred, y_true) ** 0.5


def r2(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """Coefficient of determination: 1 - SS_res / SS_tot (NaN when the targets are constant)."""
    p, t = _pair(y_pred, y_true)
    ss_res = float(((t - p) ** 2).sum())
    ss_tot = float(((t - t.mean()) ** 2).sum())
    if ss_tot == 0:
        return float("nan")
    return 1.0 - ss_res / ss_tot


def regression_metrics(y_pred: torch.Tensor, y_true: torch.Tensor) -> dict[str, float]:
    """MAE, MSE, RMSE and R^2 as {"mae": .., "mse": .., "rmse": .., "r2": ..}."""
    return {
        "mae": mae(y_pred, y_true),
        "mse": mse(y_pred, y_true),
        "rmse": rmse(y_pred, y_true),
        "r2": r2(y_pred, y_true),
    }
