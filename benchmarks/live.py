"""What `fit(..., live=True)` costs: the same training with and without the live loss curves,
side by side in one process, as a notebook would draw them.

    python benchmarks/live.py [--epochs 3000] [--rows 20000] [--repeats 3]

An MLP (64, 64) on a generated regression table, full batch, Adam; timed three ways: plain,
`progress=True` (the tqdm bar), and `live=True` with the notebook's display replaced by what
a kernel does with each picture (encode it as PNG, `Figure._repr_png_`). The live view may
redraw only once 20x its last redraw's cost has passed, so the redraws during training stay
under 5%; the final picture is drawn once at the end, and on a training shorter than a few
seconds that one draw is most of the difference.
"""

from __future__ import annotations

import argparse
import time

import torch

from torchwork import MLP, fit, make_loss, make_optimizer, make_regression, split
from torchwork import notebook as nb
from torchwork.plots import figure_png


def timed(epochs: int, rows: int, **options: bool) -> tuple[float, int, float]:
    """(seconds, redraws, seconds spent redrawing) of one fit."""
    X, y = make_regression(rows=rows, weights=[1.0, -2.0, 0.5, 3.0], noise=0.1, seed=0)
    s = split(X, y)
    torch.manual_seed(0)
    model = MLP(4, [64, 64], 1)
    optimizer = make_optimizer("adam", model.parameters(), lr=0.001)
    draws = []
    original = nb.LiveLossCurves.__init__

    def counting_init(self, epochs, clock=time.perf_counter, show=None):
        original(self, epochs, clock, lambda fig: figure_png(fig))
        draws.append(self)

    drawing = [0.0]
    original_draw = nb.LiveLossCurves._draw

    def timed_draw(self, records, epochs_done):
        start = time.perf_counter()
        original_draw(self, records, epochs_done)
        drawing[0] += time.perf_counter() - start

    nb.LiveLossCurves.__init__ = counting_init  # type: ignore[method-assign]
    nb.LiveLossCurves._draw = timed_draw  # type: ignore[method-assign]
    nb_in_notebook = nb.in_notebook
    nb.in_notebook = lambda: True  # type: ignore[assignment]
    try:
        start = time.perf_counter()
        fit(model, s.X_train, s.y_train, s.X_test, s.y_test, make_loss("mse"), optimizer,
            epochs, log=None, **options)  # fmt: skip
        seconds = time.perf_counter() - start
    finally:
        nb.LiveLossCurves.__init__ = original  # type: ignore[method-assign]
        nb.LiveLossCurves._draw = original_draw  # type: ignore[method-assign]
        nb.in_notebook = nb_in_notebook  # type: ignore[assignment]
    return seconds, (draws[0].draws if draws else 0), drawing[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3000)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ways = {"plain": {}, "progress bar": {"progress": True}, "live": {"live": True}}
    runs: dict[str, list[tuple[float, int, float]]] = {name: [] for name in ways}
    for _ in range(args.repeats):  # interleaved: a slower spell of the machine hits all three
        for name, options in ways.items():
            runs[name].append(timed(args.epochs, args.rows, **options))
    base = min(runs["plain"])[0]
    print(f"fit: MLP 64,64, {args.rows} rows, {args.epochs} epochs, best of {args.repeats}")
    print(f"{'':14}{'seconds':>9}{'vs plain':>10}{'redraws':>9}{'drawing':>9}{'share':>8}")
    for name in ways:
        seconds, draws, drawing = min(runs[name])
        share = drawing / seconds
        print(f"{name:14}{seconds:9.2f}{seconds / base:10.3f}{draws:9}{drawing:9.2f}{share:8.1%}")


if __name__ == "__main__":
    main()
