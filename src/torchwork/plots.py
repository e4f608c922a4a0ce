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


def save_figure(fig: Figure, path: str | Path) -> None:
    from torchwork.fileio import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
