import math

import numpy as np
import pytest
import torch

from torchwork import least_squares, mae, make_regression, mse, r2, regression_metrics, rmse


def test_metrics_match_their_textbook_formulas():
    rng = np.random.default_rng(0)
    t = rng.normal(size=200)
    p = t + rng.normal(scale=0.3, size=200)
    pred, true = torch.tensor(p, dtype=torch.float32), torch.tensor(t, dtype=torch.float32)
    p32, t32 = p.astype(np.float32).astype(float), t.astype(np.float32).astype(float)
    assert mae(pred, true) == pytest.approx(np.mean(np.abs(p32 - t32)))
    assert mse(pred, true) == pytest.approx(np.mean((p32 - t32) ** 2))
    assert rmse(pred, true) == pytest.approx(math.sqrt(np.mean((p32 - t32) ** 2)))
    expected_r2 = 1 - np.sum((t32 - p32) ** 2) / np.sum((t32 - t32.mean()) ** 2)
    assert r2(pred, true) == pytest.approx(expected_r2)
    assert set(regression_metrics(pred, true)) == {"mae", "mse", "rmse", "r2"}


def test_perfect_predictions_and_constant_targets():
    y = torch.tensor([1.0, 2.0, 3.0])
    assert regression_metrics(y, y) == {"mae": 0.0, "mse": 0.0, "rmse": 0.0, "r2": 1.0}
    assert math.isnan(r2(torch.ones(3), torch.ones(3)))


def test_least_squares_matches_numpy():
    X, y = make_regression(rows=300, weights=[1.0, -2.0, 3.0], bias=0.7, noise=0.2, seed=4)
    exact = least_squares(X, y)
    A = np.hstack([X.double().numpy(), np.ones((300, 1))])
    solution, *_ = np.linalg.lstsq(A, y.double().numpy(), rcond=None)
    assert np.allclose(exact.weight.numpy(), solution[:-1])
    assert np.allclose(exact.bias.numpy(), solution[-1])
    assert exact.predict(X).dtype == torch.float32


def test_least_squares_recovers_the_line_exactly():
    X = torch.arange(0, 1, 0.02).unsqueeze(1)
    exact = least_squares(X, 0.7 * X + 0.3)
    assert float(exact.weight) == pytest.approx(0.7, abs=1e-6)
    assert float(exact.bias) == pytest.approx(0.3, abs=1e-6)


def test_regression_metrics_are_the_four_functions_numbers():
    _, y = make_regression(rows=5000, weights=[1.0, -2.0], noise=0.3, seed=0)
    y_pred = y + 0.1 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    assert regression_metrics(y_pred, y) == {
        "mae": mae(y_pred, y),
        "mse": mse(y_pred, y),
        "rmse": rmse(y_pred, y),
        "r2": r2(y_pred, y),
    }
