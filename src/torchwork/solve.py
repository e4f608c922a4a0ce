"""The exact answer: closed-form least squares, the yardstick for gradient descent."""

from __future__ import annotations

from dataclasses import dataclass

import torch

CHUNK_ROWS = 65536  # rows converted to float64 at a time: memory stays bounded
RCOND = 1e-12  # directions of the standardized normal equations below this are dropped


@dataclass
class LeastSquares:
    """y = X @ weight + bias with the smallest possible training MSE."""

    weight: torch.Tensor  # [in_features, out_features]
    bias: torch.Tensor  # [out_features]

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        parts = [
            (X[i : i + CHUNK_ROWS].double() @ self.weight + self.bias).to(X.dtype)
            for i in range(0, len(X), CHUNK_ROWS)
        ]
        return torch.cat(parts) if parts else X.new_zeros((0, self.weight.shape[1]))


def least_squares(X: torch.Tensor, y: torch.Tensor) -> LeastSquares:
    """Fit weights and bias exactly, in float64 on the CPU.

    Solved through the normal equations of the centred, equilibrated columns: two passes
    over the rows, a chunk at a time, then one small solve (`torch.linalg.lstsq`, gelsd,
    which takes the minimum-norm answer when columns are collinear, as one-hot columns
    with a bias are). Time grows with rows x columns², memory with columns² alone.

    >>> X, y = make_line()
    >>> ls = least_squares(X, y)
    >>> round(float(ls.weight), 4), round(float(ls.bias), 4)
    (0.7, 0.3)
    """
    X = X.detach().cpu()
    y = y.detach().cpu().reshape(len(X), -1)
    rows, width = X.shape
    chunks = [(X[i : i + CHUNK_ROWS], y[i : i + CHUNK_ROWS]) for i in range(0, rows, CHUNK_ROWS)]
    mean_x = sum(x.double().sum(0) for x, _ in chunks) / rows
    mean_y = sum(t.double().sum(0) for _, t in chunks) / rows
    gram = torch.zeros(width, width, dtype=torch.float64)
    cross = torch.zeros(width, y.shape[1], dtype=torch.float64)
    for x, t in chunks:
        centred = x.double() - mean_x
        gram += centred.T @ centred
        cross += centred.T @ (t.double() - mean_y)
    # Equilibrated: each column's scale divided out, so that the cut-off means the same
    # for every column whatever its units.
    scale = gram.diagonal().sqrt()
    scale[scale == 0] = 1.0  # a column constant on these rows: no direction to fit
    solution = torch.linalg.lstsq(
        gram / scale[:, None] / scale[None, :],
        cross / scale[:, None],
        rcond=RCOND,
        driver="gelsd",
    ).solution
    weight = solution / scale[:, None]
    return LeastSquares(weight=weight, bias=mean_y - mean_x @ weight)
