import numpy as np
import pytest
import torch

from torchwork import least_squares
from torchwork.solve import CHUNK_ROWS


def _reference(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Predictions of the least-squares fit by numpy, on [X, 1]."""
    A = np.column_stack([X.double().numpy(), np.ones(len(X))])
    solution = np.linalg.lstsq(A, y.double().numpy(), rcond=None)[0]
    return torch.from_numpy(A @ solution)


@pytest.mark.parametrize("rows", [200, 3 * CHUNK_ROWS + 17])
def test_normal_equations_give_numpys_fit_in_chunks(rows):
    rng = np.random.default_rng(0)
    # Columns in their own units, far from zero: the centring is what keeps this exact.
    X = rng.normal(size=(rows, 6)) * [1, 10, 0.01, 1000, 5, 1] + [0, 1e4, -3, 5e5, 0, 7]
    y = X @ rng.normal(size=(6, 2)) + 3 + rng.normal(size=(rows, 2))
    X, y = torch.tensor(X, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    exact = least_squares(X, y)
    assert exact.weight.shape == (6, 2) and exact.bias.shape == (2,)
    assert torch.allclose(X @ exact.weight + exact.bias, _reference(X, y), rtol=1e-9, atol=1e-7)


def test_collinear_one_hot_columns_with_a_bias_give_the_best_fit():
    rng = np.random.default_rng(1)
    category = rng.integers(0, 4, 1000)
    one_hot = np.eye(4)[category]  # the four columns sum to the bias column
    X = np.column_stack([rng.normal(size=1000), one_hot]).astype(np.float32)
    y = (2 * X[:, :1] + category[:, None] * 0.5 + rng.normal(scale=0.1, size=(1000, 1))).astype(
        np.float32
    )
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    exact = least_squares(X, y)
    assert torch.isfinite(exact.weight).all()
    residual = ((exact.predict(X).double() - y.double()) ** 2).mean()
    best = ((_reference(X, y) - y.double()) ** 2).mean()
    assert float(residual) == pytest.approx(float(best), rel=1e-6)


def test_a_column_constant_on_the_training_rows_is_no_problem():
    X = torch.tensor([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [4.0, 5.0]])
    y = 2 * X[:, :1] + 1
    exact = least_squares(X, y)
    assert torch.allclose(exact.predict(X), y, atol=1e-5)
