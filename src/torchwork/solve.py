"""The exact answer: closed-form least squares, the yardstick for gradient descent."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LeastSquares:
    """y = X @ weight + bias with the smallest possible training MSE."""

    weight: torch.Tensor  # [in_features, out_features]
    bias: torch.Tensor  # [out_features]

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        return (X.double() @ self.weight + self.bias).to(X.dtype)


def least_squares(X: torch.Tensor, y: torch.Tensor) -> LeastSquares:
    """Fit weights and bias exactly with `torch.linalg.lstsq`, in float64 on the CPU.

    >>> X, y = make_line()
    >>> ls = least_squares(X, y)
    >>> round(float(ls.weight), 4), round(float(ls.bias), 4)
    (0.7, 0.3)
    """
    X = X.detach().cpu().double()
    y = y.detach().cpu().double().reshape(len(X), -1)
    A = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], dim=1)
    # gelsd handles rank-deficient inputs (a constant or duplicated column) gracefully.
    solution = torch.linalg.lstsq(A, y, driver="gelsd").solution
    return LeastSquares(weight=solution[:-1], bias=solution[-1])
