"""In a Jupyter notebook: what torchwork's objects show (HTML fragments and pictures), and the
live loss curves that `fit(..., live=True)` redraws while training.

Nothing here needs more than IPython (no ipywidgets), and IPython is used only inside a
kernel, which has imported it already: `import torchwork` stays cheap, and the library
works without IPython installed.
"""

from __future__ import annotations

import base64
import html
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TABLE_ROWS = 40  # rows a table shows in full; a longer one shows both ends
REDRAW_RATIO = 20  # the live view waits 20x a redraw's cost between redraws: under 5% of the time
# Seconds a redraw is assumed to cost before one is measured (0.12 s measured for the course's
# 1000 x 700 picture on 2 cores): the first picture comes after 20 x 0.15 = 3 s of training.
FIRST_REDRAW_COST = 0.15


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's shell has a kernel); False in a terminal,
    in plain IPython, or where IPython is not installed."""
    # A kernel imported IPython before running any cell: where it is not imported yet this
    # is no kernel, and importing it (a third of a second) would only say so.
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def escape(text: Any) -> str:
    return html.escape(str(text), quote=True)


def figure_html(fig: Figure, alt: str = "", max_width: str = "100%") -> str:
    """A matplotlib Figure as an `<img>` holding its PNG as a data URI (no file, no link),
    at most `max_width` wide (a CSS length)."""
    from torchwork.plots import figure_png

    data = base64.b64encode(figure_png(fig)).decode("ascii")
    return (
        f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}" '
        f'style="max-width: {escape(max_width)}; height: auto">'
    )


def number(value: Any, digits: int = 5) -> str:
    """A table cell: an integer as it is, a float with `digits` decimals (4 significant
    digits from 10,000 up), None as nothing, anything else as text."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if not math.isfinite(value) or abs(value) >= 1e4:
        return f"{value:.4g}"
    return f"{value:.{digits}f}"


def html_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    limit: int = TABLE_ROWS,
    right: Iterable[str] = (),
) -> str:
    """A plain HTML table of cells (text); more than `limit` rows show the first and last
    half of them around a row saying how many were left out. `right` names the columns of
    numbers, aligned right."""
    aligned = set(right)
    right_style = ' style="text-align: right"'

    def cells(tag: str, values: Iterable[Any]) -> str:
        return "".join(
            f"<{tag}{right_style if c in aligned else ''}>{escape(v)}</{tag}>"
            for c, v in zip(columns, values, strict=True)
        )

    body = [f"<tr>{cells('td', row)}</tr>" for row in rows]
    if len(rows) > limit:
        half = limit // 2
        gap = f'<tr><td colspan="{len(columns)}">… {len(rows) - 2 * half} rows left out …</td></tr>'
        body = [*body[:half], gap, *body[-half:]]
    return (
        f"<table><thead><tr>{cells('th', columns)}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def side_by_side(*parts: str) -> str:
    """HTML fragments in a row that wraps on a narrow page."""
    row = "display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start"
    return f'<div style="{row}">' + "".join(f"<div>{part}</div>" for part in parts) + "</div>"


def loss_figure(records: Sequence[Mapping[str, float]]) -> Figure:
    """The course's loss curves from History records (epoch, train_loss, test_loss, val_loss)."""
    from torchwork.plots import plot_loss_curves

    def column(name: str) -> list[float]:
        return [r[name] for r in records if name in r]

    return plot_loss_curves(
        column("epoch"), column("train_loss"), column("test_loss"), column("val_loss")
    )


class LiveLossCurves:
    """The loss curves so far in one notebook output, redrawn in place while training.

    `update` after each logged epoch redraws only once at least REDRAW_RATIO times the last
    redraw's cost has passed since it ended, so drawing takes under 5% of the training time
    however slow a redraw or fast an epoch is; `finish` draws what the last redraw missed.
    `clock` (seconds) and `show` (given each new Figure; by default one IPython display
    output, updated in place) are there for tests.
    """

    def __init__(
        self,
        epochs: int,
        clock: Callable[[], float] = time.perf_counter,
        show: Callable[[Figure], None] | None = None,
    ) -> None:
        self.epochs = epochs
        self.clock = clock
        self.show = show if show is not None else _DisplayOutput()
        self.draws = 0
        self._cost = FIRST_REDRAW_COST
        self._drawn_at = clock()  # the first redraw, too, waits for a share of training time
        self._drawn: tuple[int, int] | None = None  # (records, epochs done) in the picture

    def update(self, records: Sequence[Mapping[str, float]], epochs_done: int) -> None:
        """After a logged epoch: redraw if enough time has passed since the last redraw."""
        if self.clock() - self._drawn_at >= REDRAW_RATIO * self._cost:
            self._draw(records, epochs_done)

    def finish(self, records: Sequence[Mapping[str, float]], epochs_done: int) -> None:
        """After training: draw the complete picture, unless the last redraw was of it."""
        if records and self._drawn != (len(records), epochs_done):
            self._draw(records, epochs_done)

    def _draw(self, records: Sequence[Mapping[str, float]], epochs_done: int) -> None:
        start = self.clock()
        fig = loss_figure(records)
        fig.axes[0].set_title(
            f"Training and test loss curves ({epochs_done} of {self.epochs} epochs)"
        )
        self.show(fig)
        self._drawn_at = self.clock()
        self._cost = self._drawn_at - start
        self._drawn = (len(records), epochs_done)
        self.draws += 1


class _DisplayOutput:
    """One IPython display output: created by the first picture, replaced by each next one."""

    def __init__(self) -> None:
        self.handle: Any = None

    def __call__(self, fig: Figure) -> None:
        if self.handle is None:
            from IPython.display import display

            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)


def model_html(
    name: str,
    description: str,
    parameters: int,
    tensors: Sequence[tuple[str, Sequence[int], Sequence[float] | None]],
    layers: str,
) -> str:
    """A model as Jupyter shows it: its class and what it is, how many parameters it has,
    its state_dict's tensors (name, shape, and the values where given), its layers."""
    shown_values = any(values is not None for _, _, values in tensors)
    columns = ["tensor", "shape", *(["values"] if shown_values else [])]
    rows = [
        [
            key,
            "×".join(map(str, shape)) or "scalar",
            *([" ".join(number(v, 4) for v in values or [])] if shown_values else []),
        ]
        for key, shape, values in tensors
    ]
    return (
        f"<p><b>{escape(name)}</b>: {escape(description)}; {parameters:,} parameter"
        f"{'s' if parameters != 1 else ''}</p>"
        f"{html_table(columns, rows, right=['shape'])}<pre>{escape(layers)}</pre>"
    )
