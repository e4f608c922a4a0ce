"""Probabilities that mean what they say: temperature scaling (`--calibrate`).

One number T, fitted on the validation split, divides a classifier's logits before the
sigmoid or softmax (Guo et al. 2017, "On calibration of modern neural networks"). T > 1
softens an over-confident model, T < 1 sharpens a timid one; the predicted class never
changes, so accuracy, F1 and ROC AUC stay as they were. T goes with the model's
preprocessing (the encoder's `temperature`), so `predict`, `serve` and exports give the
calibrated probabilities. Measured before and after on each split: the expected calibration
error (ECE: 15 equal-width bins of the top class's probability, the gap between confidence
and accuracy weighted by the rows in each) and the Brier score.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from torchwork.errors import ConfigError
from torchwork.metrics import decode_classes
from torchwork.registry import Task

BINS = 15  # of the reliability diagram and the ECE, as Guo et al.
MIN_VAL_ROWS = 10  # a temperature fitted on fewer is noise
# ...and on fewer than this, a warning: a 15-bin ECE over 100 rows already has bins of a few
# rows, and on breast cancer 12 validation rows gave a temperature that made the test ECE
# ten times worse (0.042 to 0.402)
TRUSTED_VAL_ROWS = 100


def check_calibrate(calibrate: bool, task: Task, val_rows: int) -> None:
    """--calibrate is for classification, fitted on a validation split; else one line."""
    if not calibrate:
        return
    if task == "regression":
        raise ConfigError(
            "--calibrate is for classification (it scales class probabilities); for a "
            "regression use --interval 0.9 for error bars"
        )
    if val_rows < MIN_VAL_ROWS:
        raise ConfigError(
            f"--calibrate needs at least {MIN_VAL_ROWS} validation rows to fit on (the split has "
            f"{val_rows}): add --val, for example --train 0.6 --val 0.2"
        )


def fit_temperature(logits: torch.Tensor, y: torch.Tensor, task: Task) -> float:
    """The temperature that minimises the negative log-likelihood of the true classes."""
    logits, y = logits.detach().cpu().double(), y.detach().cpu().reshape(-1)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        scaled = logits / log_t.exp()
        if task == "binary":
            value = F.binary_cross_entropy_with_logits(scaled.reshape(-1), y.double())
        else:
            value = F.cross_entropy(scaled, y.long())
        value.backward()
        return value

    optimizer.step(loss)
    t = float(log_t.detach().exp())
    return t if math.isfinite(t) and t > 0 else 1.0


def reliability(probabilities: torch.Tensor, y: torch.Tensor) -> dict[str, list[Any]]:
    """Per bin of the top class's probability: its mean confidence, accuracy and rows."""
    confidence, predicted = probabilities.max(dim=1)
    right = (predicted == y.reshape(-1)).double()
    bins = torch.clamp((confidence * BINS).long(), max=BINS - 1)
    result: dict[str, list[Any]] = {"confidence": [], "accuracy": [], "rows": []}
    for b in range(BINS):
        members = bins == b
        n = int(members.sum())
        result["rows"].append(n)
        # An empty bin has no confidence or accuracy: None (null in summary.json).
        result["confidence"].append(float(confidence[members].double().mean()) if n else None)
        result["accuracy"].append(float(right[members].mean()) if n else None)
    return result


def expected_calibration_error(probabilities: torch.Tensor, y: torch.Tensor) -> float:
    return _ece(reliability(probabilities, y))


def _ece(table: dict[str, list[Any]]) -> float:
    """The expected calibration error of a reliability table: the rows-weighted gap."""
    total = sum(table["rows"])
    return sum(
        n / total * abs(c - a)
        for c, a, n in zip(table["confidence"], table["accuracy"], table["rows"], strict=True)
        if n
    )


def brier(probabilities: torch.Tensor, y: torch.Tensor) -> float:
    """The mean over rows of the squared distance between the probabilities and the true
    class (summed over classes: 0 is perfect, 2 the worst)."""
    truth = F.one_hot(y.reshape(-1).long(), probabilities.shape[1]).double()
    return float(((probabilities.double() - truth) ** 2).sum(dim=1).mean())


def calibration_scores(
    logits: torch.Tensor, y: torch.Tensor, task: Task, temperature: float
) -> tuple[dict[str, float], dict[str, dict[str, list[Any]]]]:
    """ECE and Brier score of the probabilities before and after scaling by `temperature`,
    and the reliability tables ("before", "after") the ECEs come from."""
    scores, tables = {}, {}
    for when, t in (("before", 1.0), ("after", temperature)):
        probabilities = decode_classes(logits, task, t)["probabilities"]
        tables[when] = reliability(probabilities, y)
        scores[f"ece_{when}"] = _ece(tables[when])
        scores[f"brier_{when}"] = brier(probabilities, y)
    return scores, tables


def calibration_warnings(splits: dict[str, dict[str, float]], val_rows: int) -> list[str]:
    """What makes a fitted temperature untrustworthy: too few validation rows to fit it on,
    or scores of the validation or test split made worse by it (`splits`: each split's
    calibration_scores)."""
    warnings = []
    if val_rows < TRUSTED_VAL_ROWS:
        warnings.append(
            f"the temperature rests on {val_rows} validation rows, too few to trust (at least "
            f"{TRUSTED_VAL_ROWS}): raise --val, or leave out --calibrate"
        )
    for name in ("val", "test"):
        scores = splits.get(name)
        if scores is None:
            continue
        worse = [
            f"{what} {scores[f'{key}_before']:.4f} -> {scores[f'{key}_after']:.4f}"
            for key, what in (("ece", "ECE"), ("brier", "Brier score"))
            if scores[f"{key}_after"] > scores[f"{key}_before"] + 1e-9
        ]
        if worse:
            warnings.append(
                f"calibration made the {name} split's probabilities worse ({', '.join(worse)}): "
                "the model's own are better; leave out --calibrate, or fit it on more --val rows"
            )
    return warnings
