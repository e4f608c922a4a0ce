"""torchwork against hand-written PyTorch and other tools, measured side by side in one run.

    python benchmarks/run.py [--quick] [--out benchmarks/results.md]

Workloads (each the median of several interleaved runs; ratios are to the hand-written loop
of the same run, on the same machine):
  1. the course: 1000 epochs on 40 rows of the line, L1Loss + SGD(lr=0.01), test loss every
     epoch in the hand-written loop, logged every 10 epochs;
  2. shuffled minibatches: 2,000,000 x 32 linear regression, batch 1024, SGD, one epoch;
  3. `torchwork --help` against `python -c "import torch"`;
  4. loading a 1,000,000 x 20 CSV and Parquet file into one contiguous float32 tensor.
Optional tools (Lightning, skorch, scikit-learn, pandas) are measured when installed and
skipped with a note otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_medians, machine, markdown_table
from course_reference import course_data, hand_written_course

import torchwork
from torchwork import LinearRegressionModel, fit, make_loss, make_optimizer
from torchwork.data import batches
from torchwork.engine import train_step

NOTES: list[str] = []


# 1. The course ---------------------------------------------------------------------------


def torchwork_course(epochs: int, eval_every: int = 0):
    X_train, y_train, X_test, y_test = course_data()
    torch.manual_seed(42)
    model = LinearRegressionModel()
    loss_fn = make_loss("l1")
    optimizer = make_optimizer("sgd", model.parameters(), lr=0.01)
    history = fit(
        model,
        X_train,
        y_train,
        X_test,
        y_test,
        loss_fn,
        optimizer,
        epochs,
        eval_every=eval_every,
        log=None,
    )
    return model, [(r["epoch"], r["train_loss"], r["test_loss"]) for r in history.records]


def lightning_course(epochs: int):
    import logging
    import warnings

    import lightning as L

    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")

    X_train, y_train, X_test, y_test = course_data()

    class Course(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(42)
            self.model = LinearRegressionModel()
            self.loss_fn = nn.L1Loss()

        def training_step(self, batch, _):
            return self.loss_fn(self.model(batch[0]), batch[1])

        def validation_step(self, batch, _):
            self.loss_fn(self.model(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.model.parameters(), lr=0.01)

    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    # One full batch per epoch, as the course: batch_size=None hands the tensors over as they are.
    train = torch.utils.data.DataLoader([(X_train, y_train)], batch_size=None)
    test = torch.utils.data.DataLoader([(X_test, y_test)], batch_size=None)
    trainer.fit(Course(), train, test)


def skorch_course(epochs: int):
    from skorch import NeuralNetRegressor

    X_train, y_train, _, _ = course_data()
    torch.manual_seed(42)
    net = NeuralNetRegressor(
        LinearRegressionModel,
        criterion=nn.L1Loss,
        optimizer=torch.optim.SGD,
        lr=0.01,
        max_epochs=epochs,
        batch_size=-1,
        train_split=None,
        verbose=0,
    )
    net.fit(X_train, y_train)


def bench_course(repeats: int, epochs: int = 1000) -> list[list[str]]:
    reference, expected = hand_written_course(epochs)
    for name, eval_every in (("eval on recorded epochs", 0), ("--eval-every 1", 1)):
        model, history = torchwork_course(epochs, eval_every)
        same = history == expected and all(
            torch.equal(a, b)
            for a, b in zip(model.parameters(), reference.parameters(), strict=True)
        )
        if not same:
            raise SystemExit(f"torchwork ({name}) did not reproduce the hand-written course loop")
    cases = {
        "hand-written course loop": lambda: hand_written_course(epochs),
        "torchwork fit (evaluates when it records)": lambda: torchwork_course(epochs),
        "torchwork fit --eval-every 1": lambda: torchwork_course(epochs, 1),
    }
    for label, fn, module in (
        ("Lightning", lightning_course, "lightning"),
        ("skorch (no validation)", skorch_course, "skorch"),
    ):
        try:
            __import__(module)
            cases[label] = lambda fn=fn: fn(epochs)
        except ImportError:
            NOTES.append(
                f"{label} is not installed: its course row is skipped (pip install {module})"
            )
    times = interleaved_medians(cases, repeats)
    base = times["hand-written course loop"]
    return [
        [
            "the course, 1000 epochs",
            name,
            f"{t / epochs * 1e3:.3f} ms/epoch",
            f"{t / base:.2f}x time",
        ]
        for name, t in times.items()
    ]


# 2. Shuffled minibatches -------------------------------------------------------------------


def minibatch_data(rows: int, cols: int = 32):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(rows, cols, generator=g)
    y = X @ torch.randn(cols, 1, generator=g) + 0.1 * torch.randn(rows, 1, generator=g)
    return X, y


def fresh(cols: int = 32):
    torch.manual_seed(0)
    model = nn.Linear(cols, 1)
    return model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.01)


def step_all(model, loss_fn, optimizer, pairs):
    for xb, yb in pairs:
        loss = loss_fn(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def bench_minibatch(repeats: int, rows: int, batch: int = 1024) -> list[list[str]]:
    X, y = minibatch_data(rows)
    presplit = list(zip(X.split(batch), y.split(batch), strict=True))

    def hand_presplit():
        step_all(*fresh(), presplit)

    def hand_randperm():
        order = torch.randperm(rows, generator=torch.Generator().manual_seed(0))
        step_all(
            *fresh(),
            ((X[order[i : i + batch]], y[order[i : i + batch]]) for i in range(0, rows, batch)),
        )

    def tw_shuffled():
        model, loss_fn, optimizer = fresh()
        train_step(
            model, batches(X, y, batch, torch.Generator().manual_seed(0)), loss_fn, optimizer
        )

    cases = {
        "hand-written, pre-split unshuffled batches": hand_presplit,
        "hand-written, indexing with randperm": hand_randperm,
        "torchwork, shuffled (prefetched gather)": tw_shuffled,
    }
    times = interleaved_medians(cases, repeats)

    # The per-row DataLoader path is ~100x slower: time it on a slice and scale by rows.
    sub = min(rows, 100_000)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X[:sub], y[:sub]), batch_size=batch, shuffle=True
    )
    times["TensorDataset + DataLoader(shuffle=True)"] = (
        statistics.median(_timed(lambda: step_all(*fresh(), loader)) for _ in range(repeats))
        * rows
        / sub
    )
    try:
        from sklearn.linear_model import SGDRegressor

        Xn, yn = X.numpy(), y.numpy().ravel()

        def sklearn_epoch():
            reg = SGDRegressor(learning_rate="constant", eta0=0.01, random_state=0)
            for i in range(0, rows, batch):
                reg.partial_fit(Xn[i : i + batch], yn[i : i + batch])

        times["scikit-learn SGDRegressor.partial_fit"] = statistics.median(
            _timed(sklearn_epoch) for _ in range(repeats)
        )
    except ImportError:
        NOTES.append(
            "scikit-learn is not installed: its minibatch row is skipped (pip install scikit-learn)"
        )
    base = times["hand-written, pre-split unshuffled batches"]
    return [
        [
            f"{rows:,} x 32, batch {batch}, one epoch",
            name,
            f"{rows / t / 1e6:.2f}M rows/s",
            f"{base / t:.2f}x throughput",
        ]
        for name, t in times.items()
    ]


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# 3. Start-up -------------------------------------------------------------------------------


def bench_startup(repeats: int) -> list[list[str]]:
    def command(*args: str):
        return lambda: subprocess.run([sys.executable, *args], check=True, capture_output=True)

    times = interleaved_medians(
        {
            'python -c "import torch"': command("-c", "import torch"),
            "torchwork --help": command("-m", "torchwork", "--help"),
            'python -c "import torchwork"': command("-c", "import torchwork"),
        },
        repeats,
    )
    base = times['python -c "import torch"']
    return [
        ["start-up", name, f"{t * 1e3:.0f} ms", f"{t / base:.2f}x time"]
        for name, t in times.items()
    ]


# 4. Loading tables -------------------------------------------------------------------------


def bench_loading(repeats: int, rows: int) -> list[list[str]]:
    import load_tables

    results, _ = load_tables.measure(rows, 20, repeats)
    out = []
    for mode in load_tables.MODES:
        for kind in ("csv", "parquet"):
            base = results[(load_tables.TORCHWORK, kind, mode)]
            for (name, k, m), seconds in results.items():
                if (k, m) == (kind, mode):
                    out.append(
                        [
                            f"load {rows:,} x 20 {kind}, {mode}",
                            name,
                            f"{seconds:.3f} s",
                            f"{seconds / base:.2f}x time vs torchwork",
                        ]
                    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes and fewer repeats, to try it out"
    )
    parser.add_argument("--out", type=Path, help="also write the table as markdown to this file")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    rows = 200_000 if args.quick else 2_000_000
    table_rows = 100_000 if args.quick else 1_000_000

    sections = []
    for title, run in (
        ("course", lambda: bench_course(repeats)),
        ("minibatch", lambda: bench_minibatch(repeats, rows)),
        ("start-up", lambda: bench_startup(repeats)),
        ("loading", lambda: bench_loading(repeats, table_rows)),
    ):
        print(f"measuring {title}...", file=sys.stderr, flush=True)
        sections += run()
    header = ["workload", "implementation", "median", "ratio to the first row of its workload"]
    text = "\n".join(
        [
            f"torchwork {torchwork.__version__} benchmarks ({time.strftime('%Y-%m-%d')})",
            f"Machine: {machine()}",
            "",
            markdown_table(header, sections),
            "",
            *[f"- {note}" for note in NOTES],
        ]
    )
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
