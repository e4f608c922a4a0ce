"""Regression metrics: pure functions of tensors, returning plain floats."""

from __future__ import annotations

import statistics

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


def accuracy(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """The share of class indices predicted right; NaN for no rows."""
    y_pred, y_true = y_pred.reshape(-1), y_true.reshape(-1)
    return float((y_pred == y_true).double().mean()) if len(y_true) else float("nan")


def spread(values: list[float]) -> float:
    """The sample standard deviation (n - 1) of repeated measurements; 0 for a single one."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def regression_metrics(y_pred: torch.Tensor, y_true: torch.Tensor) -> dict[str, float]:
    """MAE, MSE, RMSE and R^2 as {"mae": .., "mse": .., "rmse": .., "r2": ..}: the numbers
    of the four functions above, from one pass of conversions and one of errors."""
    p, t = _pair(y_pred, y_true)
    error = p - t
    squared = error**2
    mean_squared = float(squared.mean())
    ss_tot = float(((t - t.mean()) ** 2).sum())
    return {
        "mae": float(error.abs().mean()),
        "mse": mean_squared,
        "rmse": mean_squared**0.5,
        "r2": float("nan") if ss_tot == 0 else 1.0 - float(squared.sum()) / ss_tot,
    }


def confusion_matrix(y_pred: torch.Tensor, y_true: torch.Tensor, classes: int) -> list[list[int]]:
    """Counts [true class][predicted class] for class indices 0..classes-1."""
    p = y_pred.detach().reshape(-1).long().cpu()
    t = y_true.detach().reshape(-1).long().cpu()
    counts = torch.bincount(t * classes + p, minlength=classes * classes)
    return counts.reshape(classes, classes).tolist()


def roc_auc(scores: torch.Tensor, y_true: torch.Tensor) -> float:
    """Area under the ROC curve for 0/1 labels: the chance that a random positive scores
    higher than a random negative (ties count half). NaN when only one class is present."""
    s = scores.detach().reshape(-1).double().cpu()
    t = y_true.detach().reshape(-1).long().cpu()
    positives = int(t.sum())
    negatives = len(t) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = torch.argsort(s)
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, len(s) + 1, dtype=s.dtype)
    # Tied scores share the average of their ranks.
    values, inverse, counts = torch.unique(s, return_inverse=True, return_counts=True)
    rank_sums = torch.zeros(len(values), dtype=s.dtype).index_add_(0, inverse, ranks)
    ranks = (rank_sums / counts)[inverse]
    u = float(ranks[t == 1].sum()) - positives * (positives + 1) / 2
    return u / (positives * negatives)


def classification_metrics(
    y_pred: torch.Tensor, y_true: torch.Tensor, classes: int, scores: torch.Tensor | None = None
) -> dict[str, float]:
    """Accuracy, precision, recall and F1 (class 1 for binary, macro averages for
    multiclass), and ROC AUC for binary when the positive-class scores are given."""
    matrix = torch.tensor(confusion_matrix(y_pred, y_true, classes), dtype=torch.float64)
    true_positives = matrix.diag()
    predicted = matrix.sum(dim=0)
    actual = matrix.sum(dim=1)
    precision = torch.where(predicted > 0, true_positives / predicted.clamp(min=1), 0.0)
    recall = torch.where(actual > 0, true_positives / actual.clamp(min=1), 0.0)
    denominator = precision + recall
    f1 = torch.where(denominator > 0, 2 * precision * recall / denominator.clamp(min=1e-300), 0.0)
    if classes == 2:
        chosen = (float(precision[1]), float(recall[1]), float(f1[1]))
    else:
        present = (actual > 0) | (predicted > 0)  # the labels seen, as scikit-learn averages
        chosen = tuple(float(m[present].mean()) for m in (precision, recall, f1))
    result = {
        "accuracy": accuracy(y_pred, y_true),
        "precision": chosen[0],
        "recall": chosen[1],
        "f1": chosen[2],
    }
    if classes == 2 and scores is not None:
        result["roc_auc"] = roc_auc(scores, y_true)
    return result


def decode_classes(
    outputs: torch.Tensor, task: str, temperature: float = 1.0, threshold: float = 0.5
) -> dict[str, torch.Tensor]:
    """A classifier's logits as {"index": the predicted class [rows], "probabilities":
    [rows, classes]}: one logit through a sigmoid for two classes (the positive class at
    probability 0.5 or more), a softmax over one logit per class for more; the logits
    divided by `temperature` first where it is not 1 (--calibrate: calibration.py); a binary
    row is positive at probability `threshold` or more (--threshold: decision.py)."""
    outputs = outputs.detach().cpu()
    if temperature != 1.0:
        outputs = outputs / temperature
    if task == "binary":
        p = torch.sigmoid(outputs.reshape(-1))
        return {
            "index": (p >= threshold).long(),
            "probabilities": torch.stack([1 - p, p], dim=1),
        }
    return {"index": outputs.argmax(dim=1), "probabilities": torch.softmax(outputs, dim=1)}
