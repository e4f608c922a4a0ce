"""Which inputs matter: permutation importance on the test split, grouped by source column,
and a linear model's coefficients in the columns' own units.

Permutation importance (Breiman; scikit-learn's `permutation_importance`): shuffle one
column's values across the test rows, score again, and take the drop in the metric (R² for
regression, accuracy otherwise). A text column's one-hot inputs move together, as the column
they came from; every column is shuffled `repeats` times from a seeded generator, so the
same run gives the same numbers, and the spread says how much of a drop is noise.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

import torch

from torchwork.metrics import accuracy, r2, spread
from torchwork.predict import outputs_of
from torchwork.registry import Task

if TYPE_CHECKING:
    from torchwork.tables.encode import TableEncoder

REPEATS = 5  # shuffles of each column
MAX_ROWS = 100_000  # test rows shuffled: a seeded sample of a larger split...
MAX_WORK = 2e9  # ...and of fewer on a wide table: rows x inputs x shuffles of all columns
MIN_ROWS = 2_000  # but never fewer than this (or the split's own)


def input_groups(encoder: TableEncoder) -> list[tuple[str, slice]]:
    """Each source column and the slice of model inputs it became, in input order."""
    groups, start = [], 0
    for feature in encoder.features:
        groups.append((feature.name, slice(start, start + feature.width)))
        start += feature.width
    return groups


def metric_of(task: Task) -> str:
    return "r2" if task == "regression" else "accuracy"


def permutation_importance(
    model: torch.nn.Module,
    X: torch.Tensor,
    y_raw: torch.Tensor,
    task: Task,
    encoder: TableEncoder,
    seed: int,
    repeats: int = REPEATS,
) -> dict[str, Any]:
    """The drop in the test metric when each source column is shuffled, as summary.json's
    `importance`: {metric, split, repeats, rows, baseline, columns: [{column, mean, std,
    drops}]}, the columns from the most to the least important."""
    g = torch.Generator().manual_seed(seed)
    groups = input_groups(encoder)
    work = len(groups) * repeats * max(1, X.shape[1])
    most = min(MAX_ROWS, max(MIN_ROWS, int(MAX_WORK // work)))
    if len(X) > most:
        keep = torch.sort(torch.randperm(len(X), generator=g)[:most]).values
        X, y_raw = X[keep], y_raw[keep]
    metric = metric_of(task)

    def measured(inputs: torch.Tensor) -> float:
        # The one metric, not score()'s every one: 105 scorings of 40,000 rows by score()
        # took 1.1 s of a 2.0 s logistic regression run.
        decoded = encoder.decode(outputs_of(model, inputs))
        if task == "regression":
            return r2(decoded["prediction"], y_raw)
        return accuracy(decoded["index"], y_raw)

    baseline = measured(X)
    X = X.clone()  # shuffled one column at a time in place, then put back
    columns = []
    for name, inputs in groups:
        drops = []
        original = X[:, inputs].clone()
        for _ in range(repeats):
            order = torch.randperm(len(X), generator=g)
            X[:, inputs] = original[order]  # the column's inputs move together
            drops.append(baseline - measured(X))
        X[:, inputs] = original
        columns.append(
            {
                "column": name,
                "mean": statistics.fmean(drops),
                "std": spread(drops),
                "drops": drops,
            }
        )
    columns.sort(key=lambda c: -c["mean"] if c["mean"] == c["mean"] else 0.0)
    return {
        "metric": metric,
        "split": "test",
        "repeats": repeats,
        "rows": len(X),
        "baseline": baseline,
        "columns": columns,
    }


def raw_coefficients(
    weight: torch.Tensor, bias: torch.Tensor, encoder: TableEncoder, target_scaled: bool
) -> dict[str, Any]:
    """A linear model's weights [outputs, inputs] and bias [outputs] in the columns' own
    units: the standardisation of each numeric column undone (a one-hot input is 0 or 1
    already), and for a `target_scaled` regression the target's too, so that
    prediction = bias + sum(weight * raw value). Returns {inputs, weight, bias}."""
    w = weight.detach().double().cpu().reshape(-1, encoder.in_features).clone()
    b = bias.detach().double().cpu().reshape(-1).clone()
    if target_scaled:
        w *= encoder.target_std
        b = b * encoder.target_std + encoder.target_mean
    for feature, (_, inputs) in zip(encoder.features, input_groups(encoder), strict=True):
        if feature.kind == "numeric":
            j = inputs.start
            w[:, j] /= feature.std
            b -= w[:, j] * feature.mean
    return {"inputs": encoder.input_names, "weight": w.tolist(), "bias": b.tolist()}
