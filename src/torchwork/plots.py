"""Pictures in the course's look, drawn without a display (matplotlib's Agg canvas)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _values(t: Any) -> Any:
    # Tensors on any device, arrays or lists: matplotlib wants CPU numbers.
    if hasattr(t, "detach"):
        return t.detach().cpu().numpy()
    return t


def plot_predictions(
    train_data: Any,
    train_labels: Any,
    test_data: Any,
    test_labels: Any,
    predictions: Any = None,
    path: str | Path | None = None,
    title: str | None = None,
) -> Figure:
    """The course's plot_predictions: training data blue, testing data green, predictions red.

    Returns the Figure; with `path` it is also saved as PNG (atomically).
    """
    fig = Figure(figsize=(10, 7))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(_values(train_data), _values(train_labels), c="b", s=4, label="Training data")
    ax.scatter(_values(test_data), _values(test_labels), c="g", s=4, label="Testing data")
    if predictions is not None:
        ax.scatter(_values(test_data), _values(predictions), c="r", s=4, label="Predictions")
    ax.legend(prop={"size": 14})
    if title:
        ax.set_title(title)
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_loss_curves(
    epochs: Sequence[int],
    train_loss: Sequence[float],
    test_loss: Sequence[float] | None = None,
    val_loss: Sequence[float] | None = None,
    path: str | Path | None = None,
) -> Figure:
    """The course's "Training and test loss curves" picture."""
    fig = Figure(figsize=(10, 7))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(list(epochs), list(train_loss), label="Train loss")
    if val_loss:
        ax.plot(list(epochs), list(val_loss), label="Validation loss")
    if test_loss:
        ax.plot(list(epochs), list(test_loss), label="Test loss")
    ax.set_title("Training and test loss curves")
    ax.set_ylabel("Loss")
    ax.set_xlabel("Epochs")
    ax.legend()
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_predicted_vs_actual(
    y_true: Any,
    y_pred: Any,
    path: str | Path | None = None,
    title: str = "Predicted vs actual (test data)",
) -> Figure:
    """Each test row as a point; a perfect model puts every point on the dashed line."""
    y_true, y_pred = _values(y_true).reshape(-1), _values(y_pred).reshape(-1)
    fig = Figure(figsize=(7, 7))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(y_true, y_pred, c="r", s=8, alpha=0.6, label="Predictions")
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    ax.plot([low, high], [low, high], "k--", linewidth=1, label="Perfect predictions")
    ax.set_xlabel("Actual")
    ax.set_ylabel("Predicted")
    ax.set_title(title)
    ax.legend(prop={"size": 12})
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_residuals(y_true: Any, y_pred: Any, path: str | Path | None = None) -> Figure:
    """Residuals (actual - predicted) against the predictions: no pattern is good."""
    y_true, y_pred = _values(y_true).reshape(-1), _values(y_pred).reshape(-1)
    fig = Figure(figsize=(10, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(y_pred, y_true - y_pred, c="r", s=8, alpha=0.6)
    ax.axhline(0.0, color="k", linestyle="--", linewidth=1)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("Residual (actual - predicted)")
    ax.set_title("Residuals (test data)")
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], labels: Sequence[Any], path: str | Path | None = None
) -> Figure:
    """Counts of true classes (rows) against predicted classes (columns)."""
    import numpy as np

    counts = np.asarray(matrix)
    size = max(5.0, 0.6 * len(labels) + 3)
    fig = Figure(figsize=(size, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = range(len(labels))
    ax.set_xticks(ticks, [str(v) for v in labels], rotation=45, ha="right")
    ax.set_yticks(ticks, [str(v) for v in labels])
    threshold = counts.max() / 2 if counts.size else 0
    for i in ticks:
        for j in ticks:
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                color="white" if counts[i, j] > threshold else "black",
            )
    ax.set_xlabel("Predicted")
    ax.set_ylabel("Actual")
    ax.set_title("Confusion matrix (test data)")
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def save_figure(fig: Figure, path: str | Path) -> None:
    from torchwork.fileio import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
