"""Rare classes: weights in the loss (`--class-weight balanced` or `label=weight,...`), and for
a binary task the probability above which a row is called positive (`--threshold 0.3`, or
`--threshold auto --threshold-metric f1`: the one that scores best on the validation split).
The threshold goes with the model's preprocessing (the encoder's `threshold`), so `predict`,
`evaluate`, `serve` apply it and exports name it in their preprocess.json.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from torchwork.config import class_weight_pairs
from torchwork.errors import ConfigError
from torchwork.metrics import classification_metrics
from torchwork.registry import Task

CANDIDATES = [round(0.01 * k, 2) for k in range(1, 100)]  # thresholds tried by auto


def class_weights(
    spec: str, task: Task, labels: list[Any], train: torch.Tensor
) -> list[float] | None:
    """The loss weight of each class, in output order, or None: "balanced" gives each class
    rows / (classes x its training rows), as scikit-learn's class_weight="balanced"; an
    explicit "label=weight,..." names every class it weighs (the others weigh 1)."""
    if not spec:
        return None
    if task == "regression":
        raise ConfigError("--class-weight is for classification: drop it for a regression")
    counts = torch.bincount(train.reshape(-1).long(), minlength=len(labels)).double()
    if spec == "balanced":
        if bool((counts == 0).any()):
            missing = labels[int((counts == 0).nonzero()[0])]
            raise ConfigError(
                f"--class-weight balanced: class {str(missing)[:40]!r} has no training rows"
            )
        return (counts.sum() / (len(labels) * counts)).tolist()
    names = {str(label): k for k, label in enumerate(labels)}
    weights = [1.0] * len(labels)
    for label, value in class_weight_pairs(spec).items():
        if label not in names:
            shown = ", ".join(list(names)[:5])
            raise ConfigError(f"--class-weight names {label[:40]!r}, not a class here: use {shown}")
        weights[names[label]] = value
    return weights


class WeightedBCEWithLogitsLoss(nn.Module):
    """BCEWithLogitsLoss with a weight per class: the weighted mean over rows, each row
    weighed by its class, as CrossEntropyLoss(weight=...) averages."""

    def __init__(self, weights: list[float]) -> None:
        super().__init__()
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        each = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        w = self.weights[target.long()]
        return (each * w).sum() / w.sum()


def weighted(loss_fn: nn.Module, weights: list[float] | None) -> nn.Module:
    """The loss with class weights (bce or ce), or as it is without them."""
    if weights is None:
        return loss_fn
    if isinstance(loss_fn, nn.BCEWithLogitsLoss):
        return WeightedBCEWithLogitsLoss(weights)
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        return nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
    raise ConfigError(
        f"--class-weight works with the bce and ce losses, not {type(loss_fn).__name__}"
    )


def check_threshold(threshold: float | str, task: Task) -> None:
    """A threshold other than 0.5 is for a binary task; else one line."""
    if threshold != 0.5 and task != "binary":
        raise ConfigError(
            f"--threshold is for a binary task; this is a {task} one: drop --threshold"
        )


def choose_threshold(
    probabilities: torch.Tensor, truth: torch.Tensor, metric: str
) -> tuple[float, float]:
    """The candidate threshold (0.01 to 0.99) whose `metric` on these rows is highest (ties:
    the one nearest 0.5), and that score."""
    positive = probabilities[:, 1]
    scores = {
        candidate: classification_metrics((positive >= candidate).long(), truth, 2)[metric]
        for candidate in CANDIDATES
    }
    best = max(CANDIDATES, key=lambda candidate: (scores[candidate], -abs(candidate - 0.5)))
    return best, scores[best]
