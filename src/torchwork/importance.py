"""Which inputs matter: permutation importance on the test split, grouped by source column,
and a linear model's coefficients in the columns' own units.

Permutation importance (Breiman; scikit-learn's `permutation_importance`): shuffle one
column's values across the test rows, score again, and take the drop in the metric (R² for
regression, accuracy otherwise). A column's inputs (a number, a category's code, a text's
tokens, a picture's pixels) move together; every column is shuffled `repeats` times from a seeded generator, so the
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
    from torchwork.kinds.encoder import Encoder

REPEATS = 5  # shuffles of each column
MAX_ROWS = 100_000  # test rows shuffled: a seeded sample of a larger split...
MAX_WORK = 2e9  # ...and of fewer on a wide table: rows x inputs x shuffles of all columns
MIN_ROWS = 2_000  # but never fewer than this (or the split's own)


def input_groups(encoder: Encoder) -> list[tuple[str, int, tuple[Any, ...]]]:
    """Each source column, the block it is in, and the part of that block's tensor it is."""
    return [
        (name, k, block.column_part(name))
        for k, block in enumerate(encoder.blocks)
        for name in block.columns
    ]


def _row_size(tensor: Any) -> float:
    """How many values a row of a block's tensor holds (on average, for ragged rows)."""
    if isinstance(tensor, torch.Tensor):
        return tensor[0].numel()
    return len(tensor.values) / max(len(tensor), 1)


def metric_of(task: Task) -> str:
    return "r2" if task == "regression" else "accuracy"


def permutation_importance(
    model: torch.nn.Module,
    X: Any,
    y_raw: torch.Tensor,
    task: Task,
    encoder: Encoder,
    seed: int,
    repeats: int = REPEATS,
) -> dict[str, Any]:
    """The drop in the test metric when each source column is shuffled, as summary.json's
    `importance`: {metric, split, repeats, rows, baseline, columns: [{column, mean, std,
    drops}]}, the columns from the most to the least important. `X`: the model's inputs
    (kinds.base.Inputs) of the test rows."""
    g = torch.Generator().manual_seed(seed)
    groups = input_groups(encoder)
    width = sum(_row_size(t) for t in X.tensors) if len(X) else 1
    work = len(groups) * repeats * max(1, width)
    most = min(MAX_ROWS, max(MIN_ROWS, int(MAX_WORK // work)))
    if len(X) > most:
        keep = torch.sort(torch.randperm(len(X), generator=g)[:most]).values
        X, y_raw = X[keep.to(X.device)], y_raw[keep]
    metric = metric_of(task)

    def measured(inputs: Any) -> float:
        # The one metric, not score()'s every one: 105 scorings of 40,000 rows by score()
        # took 1.1 s of a 2.0 s logistic regression run.
        decoded = encoder.decode(outputs_of(model, inputs))
        if task == "regression":
            return r2(decoded["prediction"], y_raw)
        return accuracy(decoded["index"], y_raw)

    baseline = measured(X)
    inputs = type(X)
    columns = []
    for name, k, part in groups:
        drops = []
        tensors = list(X.tensors)
        for _ in range(repeats):
            order = torch.randperm(len(X), generator=g).to(X.device)
            if part == (slice(None),):  # a block of one column: its rows reordered
                tensors[k] = X.tensors[k][order]
            else:  # one column of a block: shuffled in a copy (the column's inputs together)
                tensors[k] = X.tensors[k].clone()
                tensors[k][part] = X.tensors[k][part][order]
            drops.append(baseline - measured(inputs(tensors)))
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
    weight: torch.Tensor, bias: torch.Tensor, encoder: Encoder, target_scaled: bool
) -> dict[str, Any]:
    """A linear model's weights [outputs, inputs] (its inputs as `encoder.input_names` lists
    them) and bias [outputs] in the columns' own units: the standardisation of each number
    column undone (a category's weight applies to a row of that category as it is), and for
    a `target_scaled` regression the target's too, so that prediction = bias + sum(weight *
    raw value). Returns {inputs, weight, bias}."""
    names = encoder.input_names
    w = weight.detach().double().cpu().reshape(-1, len(names)).clone()
    b = bias.detach().double().cpu().reshape(-1).clone()
    if target_scaled:
        w *= encoder.target_std
        b = b * encoder.target_std + encoder.target_mean
    start = 0
    for block in encoder.blocks:
        for j, (mean, std) in enumerate(zip(*block.standardization(), strict=True)):
            w[:, start + j] /= std
            b -= w[:, start + j] * mean
        start += len(block.input_names())
    return {"inputs": names, "weight": w.tolist(), "bias": b.tolist()}
