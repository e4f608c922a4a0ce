"""Pictures in the course's look, drawn without a display (matplotlib's Agg canvas)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.figure
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

MAX_POINTS = 5000  # a scatter plot draws at most this many points, a fixed random sample
DPI = 100  # pixels per inch of every PNG: a 10 x 7 inch figure is 1000 x 700 pixels
FEW_POINTS = 30  # a curve of fewer points marks each one: a single point is a dot, not nothing


class Figure(matplotlib.figure.Figure):
    """A matplotlib Figure on the Agg canvas that Jupyter shows as its picture.

    IPython draws a Figure only through pyplot's inline backend, which these figures never
    touch (no global state, no GUI); `_repr_png_` makes a cell ending in one show it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        FigureCanvasAgg(self)

    def _repr_png_(self) -> bytes:
        return figure_png(self)


def figure_png(fig: matplotlib.figure.Figure) -> bytes:
    """The figure as PNG bytes, as save_figure writes it."""
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def _values(t: Any) -> Any:
    # Tensors on any device, arrays or lists: matplotlib wants CPU numbers.
    if hasattr(t, "detach"):
        return t.detach().cpu().numpy()
    return t


def _sample(*arrays: Any, seed: int = 0) -> tuple[list[Any], str]:
    """The same rows of each array: all of them, or a seeded random MAX_POINTS when there
    are more (millions of points draw a solid blob, slowly); and a note saying so."""
    values = [np.asarray(_values(a)).reshape(-1) for a in arrays]
    rows = len(values[0])
    if rows <= MAX_POINTS:
        return values, ""
    keep = np.sort(np.random.default_rng(seed).choice(rows, MAX_POINTS, replace=False))
    return [v[keep] for v in values], f" (a random {MAX_POINTS:,} of {rows:,} rows)"


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
    ax = fig.add_subplot()
    (train_data, train_labels), train_note = _sample(train_data, train_labels)
    test = [test_data, test_labels] + ([predictions] if predictions is not None else [])
    test, test_note = _sample(*test, seed=1)
    ax.scatter(train_data, train_labels, c="b", s=4, label=f"Training data{train_note}")
    ax.scatter(test[0], test[1], c="g", s=4, label=f"Testing data{test_note}")
    if predictions is not None:
        ax.scatter(test[0], test[2], c="r", s=4, label="Predictions")
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
    ax = fig.add_subplot()
    epochs = list(epochs)
    marks = curve_markers(len(epochs))
    ax.plot(epochs, list(train_loss), label="Train loss", **marks)
    if val_loss:
        ax.plot(epochs, list(val_loss), label="Validation loss", **marks)
    if test_loss:
        ax.plot(epochs, list(test_loss), label="Test loss", **marks)
    ax.set_title("Training and test loss curves")
    ax.set_ylabel("Loss")
    ax.set_xlabel("Epochs")
    ax.legend()
    if path is not None:
        save_figure(fig, path)
    return fig


def curve_markers(points: int) -> dict[str, Any]:
    """How a curve of this many points marks them (Axes.plot's keywords): a line alone draws
    nothing for one point (a run of fewer epochs than --log-every records one), so a short
    curve marks every point; a long one is a plain line."""
    return {"marker": "o", "markersize": 4} if points < FEW_POINTS else {}


def plot_predicted_vs_actual(
    y_true: Any,
    y_pred: Any,
    path: str | Path | None = None,
    title: str = "Predicted vs actual (test data)",
) -> Figure:
    """Each test row as a point; a perfect model puts every point on the dashed line."""
    (y_true, y_pred), note = _sample(y_true, y_pred)
    fig = Figure(figsize=(7, 7))
    ax = fig.add_subplot()
    ax.scatter(y_true, y_pred, c="r", s=8, alpha=0.6, label="Predictions")
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    ax.plot([low, high], [low, high], "k--", linewidth=1, label="Perfect predictions")
    ax.set_xlabel("Actual")
    ax.set_ylabel("Predicted")
    ax.set_title(title + note)
    ax.legend(prop={"size": 12})
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_residuals(y_true: Any, y_pred: Any, path: str | Path | None = None) -> Figure:
    """Residuals (actual - predicted) against the predictions: no pattern is good."""
    (y_true, y_pred), note = _sample(y_true, y_pred)
    fig = Figure(figsize=(10, 5))
    ax = fig.add_subplot()
    ax.scatter(y_pred, y_true - y_pred, c="r", s=8, alpha=0.6)
    ax.axhline(0.0, color="k", linestyle="--", linewidth=1)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("Residual (actual - predicted)")
    ax.set_title(f"Residuals (test data){note}")
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


IMPORTANCE_BARS = 20  # columns drawn, the most important first


def plot_importance(
    importance: dict[str, Any],
    coefficients: dict[str, Any] | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Permutation importance per column (the mean drop in the test metric, with the standard
    deviation over the shuffles as error bars); beside it, for a linear model, its
    coefficients in the columns' own units next to the closed-form ones."""
    import numpy as np

    columns = importance["columns"][:IMPORTANCE_BARS][::-1]  # the largest at the top
    panels = 2 if coefficients else 1
    height = max(3.0, 0.35 * max(len(columns), len((coefficients or {}).get("inputs", []))) + 1.5)
    fig = Figure(figsize=(6.0 * panels, height))
    ax = fig.add_subplot(1, panels, 1)
    ticks = np.arange(len(columns))
    ax.barh(ticks, [c["mean"] for c in columns], xerr=[c["std"] for c in columns], color="C0")
    ax.set_yticks(ticks, [str(c["column"]) for c in columns])
    ax.axvline(0.0, color="k", linewidth=1)
    metric = {"r2": "R²"}.get(importance["metric"], importance["metric"])
    ax.set_xlabel(f"Drop in test {metric} when the column is shuffled")
    shown = "" if len(importance["columns"]) <= IMPORTANCE_BARS else f", top {IMPORTANCE_BARS}"
    ax.set_title(f"Permutation importance ({importance['repeats']} shuffles{shown})")
    if coefficients:
        learned = coefficients["learned"]
        names = learned["inputs"][:IMPORTANCE_BARS][::-1]
        rows = np.arange(len(names))
        ax2 = fig.add_subplot(1, panels, 2)
        weight = np.asarray(learned["weight"][0])[: len(names)][::-1]
        closed = coefficients.get("closed_form")
        width = 0.4 if closed else 0.8
        ax2.barh(rows + (width / 2 if closed else 0), weight, height=width, label="learned")
        if closed:
            exact = np.asarray(closed["weight"][0])[: len(names)][::-1]
            ax2.barh(rows - width / 2, exact, height=width, label="closed-form", color="C1")
            ax2.legend()
        ax2.set_yticks(rows, [str(n) for n in names])
        ax2.axvline(0.0, color="k", linewidth=1)
        ax2.set_xlabel("Coefficient, in the column's own units")
        title = "Coefficients" if len(learned["weight"]) == 1 else "Coefficients of the first class"
        ax2.set_title(title)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_reliability(calibration: dict[str, Any], path: str | Path | None = None) -> Figure:
    """The reliability diagram: accuracy against confidence per bin of the top class's
    probability, before and after temperature scaling; a calibrated model lies on the
    diagonal."""
    diagram = calibration["reliability"]
    fig = Figure(figsize=(6.0, 5.5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="k", linestyle="--", linewidth=1, label="calibrated")
    scores = calibration["splits"][diagram["split"]]
    for when, marker in (("before", "o"), ("after", "s")):
        points = [
            (c, a)
            for c, a in zip(diagram[when]["confidence"], diagram[when]["accuracy"], strict=True)
            if c is not None
        ]
        ece = scores[f"ece_{when}"]
        label = (
            f"{when} (ECE {ece:.3f})"
            if when == "before"
            else (f"after, T = {calibration['temperature']:.3g} (ECE {ece:.3f})")
        )
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Confidence (probability of the predicted class)")
    ax.set_ylabel("Accuracy")
    ax.set_title(f"Reliability ({diagram['split']} data)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def save_figure(fig: matplotlib.figure.Figure, path: str | Path) -> None:
    from torchwork.fileio import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=DPI)


PUSH_PANELS = 6  # groups (classes) shown in the picture of what pushes the outputs, at most


def plot_explained(part: dict[str, Any], path: str | Path | None = None) -> Figure:
    """What pushes a model's outputs (summary.json's `explained` of one column: a text
    column's words and bigrams): a panel of bars per group (a class), the strongest first."""
    import numpy as np

    panels = list(part["groups"].items())[:PUSH_PANELS]
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(4.2 * columns, 3.2 * rows))
    for k, (label, top) in enumerate(panels):
        ax = fig.add_subplot(rows, columns, k + 1)
        top = top[::-1]  # the strongest at the top
        ticks = np.arange(len(top))
        ax.barh(ticks, [p for _, p in top], color=f"C{k % 10}")
        ax.set_yticks(ticks, [str(g) for g, _ in top])
        ax.set_title(str(label), fontsize=10)
        ax.set_xlabel(f"push ({part['measure']})", fontsize=8)
    fig.suptitle(f"'{part['column']}': {part['title']}")
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


GRID = 16  # test images in the picture of predictions: a 4 x 4 grid


def plot_image_predictions(
    images: Any,
    truth: Any,
    predicted: Any,
    probabilities: Any,
    labels: Sequence[Any],
    path: str | Path | None = None,
    seed: int = 0,
) -> Figure:
    """The course's picture of predictions on images: a grid of test images (a fixed random
    sample, up to half of it mistakes when there are any), each titled with its predicted label, its probability and the true label;
    right in green, mistakes in red with a red frame."""
    images = np.asarray(_values(images))
    truth, predicted = np.asarray(_values(truth)), np.asarray(_values(predicted))
    probabilities = np.asarray(_values(probabilities))
    n = min(GRID, len(images))
    rng = np.random.default_rng(seed)
    wrong = np.flatnonzero(predicted != truth)
    shown_wrong = rng.permutation(wrong)[: GRID // 2]  # up to half the grid: some mistakes
    rest = np.setdiff1d(np.arange(len(images)), shown_wrong)
    chosen = np.sort(
        np.concatenate([shown_wrong, rng.choice(rest, n - len(shown_wrong), replace=False)])
    )
    columns = 4 if n > 4 else max(n, 1)
    rows = -(-n // columns)
    fig = Figure(figsize=(2.6 * columns, 2.9 * rows))
    for place, i in enumerate(chosen):
        ax = fig.add_subplot(rows, columns, place + 1)
        picture = images[i].transpose(1, 2, 0)
        grey = picture.shape[2] == 1
        ax.imshow(
            picture[:, :, 0] if grey else picture, cmap="gray" if grey else None, vmin=0, vmax=255
        )
        right = predicted[i] == truth[i]
        colour = "g" if right else "r"
        p = probabilities[i, predicted[i]]
        ax.set_title(
            f"Pred: {labels[predicted[i]]} ({p:.2f})\nTruth: {labels[truth[i]]}",
            fontsize=9,
            c=colour,
        )
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(not right)
            spine.set_color("r")
            spine.set_linewidth(3)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig
