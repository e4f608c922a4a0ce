"""The default MLP on small real tables, seed by seed: torchwork's mlp against its linear
model and scikit-learn's MLP on the same test rows, side by side in one run.

    python benchmarks/small_tables.py [--seeds 0-9,42] [--tables diabetes,wine,iris,breast_cancer]
                                      [--ensemble] [--out FILE]

For each of scikit-learn's bundled tables and each seed:

- `torchwork run --data TABLE --seed S --no-plots` with `--model linear` and with
  `--model mlp`, every other setting the default (in this process: no import per run). The
  mlp's default split on these tables is 0.6 / 0.2 / 0.2 with early stopping on the
  validation rows, the linear model's 0.8 / 0.2; both are scored on the same test rows
  (data.split_sizes).
- scikit-learn: `StandardScaler` + `MLPRegressor` / `MLPClassifier` with the same hidden
  sizes (64, 64), `early_stopping=True` (its own 10% of the rows it is given), fitted on the
  rows torchwork's linear model trained on and scored on the same test rows.
- `--ensemble`: a prototype that is not part of torchwork: five MLPs, each trained with
  torchwork's engine on four of five folds of the train + val rows (`data.fold_indices`),
  stopped early on the fifth, their probabilities (or values) averaged.

It prints each tool's test metric (R² or accuracy) as the mean and standard deviation over
the seeds, the paired difference from the linear model, and on how many seeds it is more
than 0.02 below the linear model's. The test splits hold 89 (diabetes), 36 (wine), 30
(iris) and 114 (breast cancer) rows: one row of 30 is 0.033.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_report

TABLES = {"diabetes": "r2", "wine": "accuracy", "iris": "accuracy", "breast_cancer": "accuracy"}
BAR = 0.02  # the bar: at least the linear model's test metric minus this
MEMBERS = 5


def write_table(path: Path, name: str) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    columns = {
        str(f).replace(" ", "_"): bunch.data[:, i] for i, f in enumerate(bunch.feature_names)
    }
    pcsv.write_csv(pa.table({**columns, "target": bunch.target}), path)


def torchwork_run(path: Path, out: Path, seed: int, model: str) -> tuple[float, np.ndarray]:
    """The test metric of a default run, and each row's split as predictions.csv gives it."""
    import pyarrow.csv as pcsv

    from torchwork.cli import main

    args = ["run", "--data", str(path), "--model", model, "--seed", str(seed)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        code = main([*args, "--no-plots", "--out", str(out)])
    if code:
        raise SystemExit(f"torchwork {' '.join(args)} failed:\n{printed.getvalue()}")
    summary = json.loads((out / "summary.json").read_text())
    split = np.array(pcsv.read_csv(out / "predictions.csv").column("split").to_pylist())
    return summary["metrics"]["test"][TABLES[path.stem]], split


def sklearn_mlp(path: Path, seed: int, split: np.ndarray) -> float:
    """scikit-learn's MLP with torchwork's hidden sizes, fitted on the linear model's rows."""
    import warnings

    import pyarrow.csv as pcsv
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    table = pcsv.read_csv(path)
    X = np.column_stack([c.to_numpy() for c in table.columns[:-1]])
    y = table.column("target").to_numpy()
    train, test = split == "train", split == "test"
    regression = TABLES[path.stem] == "r2"
    kind = MLPRegressor if regression else MLPClassifier
    mlp = kind(hidden_layer_sizes=(64, 64), early_stopping=True, max_iter=500, random_state=seed)
    pipeline = make_pipeline(StandardScaler(), mlp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline.fit(X[train], y[train])
    return float(pipeline.score(X[test], y[test]))  # R² or accuracy, as torchwork's


def ensemble(path: Path, seed: int, folder: Path) -> float:
    """The prototype: MEMBERS MLPs on folds of the train + val rows, averaged; each trained
    as a fit of `--folds` is (the run's session: its data, loss and fit options)."""
    import torch

    from torchwork.cli.parser import build_parser, config_from_args
    from torchwork.data import fold_indices
    from torchwork.engine import fit
    from torchwork.optim import make_optimizer
    from torchwork.predict import score
    from torchwork.workflow.run import setup
    from torchwork.workflow.session import fresh_model
    from torchwork.workflow.train import fit_options

    args = ["run", "--data", str(path), "--model", "mlp", "--seed", str(seed)]
    session = setup(config_from_args(build_parser().parse_args(args)), folder, lambda _: None)
    data, t = session.data, session.config.train
    X = torch.cat([session.X["train"], session.X["val"]])
    y = torch.cat([session.y["train"], session.y["val"]])
    labels = torch.cat([data.y_raw["train"], data.y_raw["val"]]).reshape(-1)
    folds = fold_indices(len(X), MEMBERS, None if data.task == "regression" else labels, seed)
    outputs = []
    for k, held in enumerate(folds):
        kept = torch.cat([f for i, f in enumerate(folds) if i != k])
        member = copy.deepcopy(session.config)
        member.train.seed = seed + 1000 * k
        model = fresh_model(member, data)
        optimizer = make_optimizer(t.optimizer, model.parameters(), lr=t.lr, momentum=t.momentum)
        fit(
            model,
            X[kept],
            y[kept],
            session.X["test"],
            session.y["test"],
            session.loss_fn,
            optimizer,
            t.epochs,
            X_val=X[held],
            y_val=y[held],
            seed=member.train.seed,
            log=None,
            **fit_options(session),
        )
        model.eval()
        with torch.no_grad():
            outputs.append(model(session.X["test"]))
    stacked = torch.stack(outputs)
    if data.task == "regression":
        combined = stacked.mean(0)
    elif data.task == "binary":
        combined = torch.logit(torch.sigmoid(stacked).mean(0), eps=1e-7)
    else:
        combined = torch.softmax(stacked, -1).mean(0).log()
    metrics = score(data.task, data.encoder, combined, data.y_raw["test"]).metrics
    return metrics[TABLES[path.stem]]


def seeds_of(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds += range(int(first), int(last or first) + 1)
    return seeds


def main() -> None:
    from torchwork.metrics import spread

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-9,42", help="e.g. 0-29,42")
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--ensemble", action="store_true", help="also the 5-MLP prototype")
    parser.add_argument("--out", help="also write the table to this Markdown file")
    args = parser.parse_args()
    seeds = seeds_of(args.seeds)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.tables.split(","):
            path = folder / f"{name}.csv"
            write_table(path, name)
            scores: dict[str, list[float]] = {}
            for seed in seeds:
                linear, split = torchwork_run(
                    path, folder / f"{name}-{seed}-linear", seed, "linear"
                )
                mlp, _ = torchwork_run(path, folder / f"{name}-{seed}-mlp", seed, "mlp")
                found = {"torchwork linear": linear, "torchwork mlp": mlp}
                found["scikit-learn MLP"] = sklearn_mlp(path, seed, split)
                if args.ensemble:
                    found[f"prototype: {MEMBERS} MLPs on folds"] = ensemble(path, seed, folder)
                for tool, value in found.items():
                    scores.setdefault(tool, []).append(value)
                print(f"{name} seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in found.items()))
            base = scores["torchwork linear"]
            for tool, values in scores.items():
                diffs = [v - b for v, b in zip(values, base, strict=True)]
                rows.append(
                    [
                        f"{name} ({TABLES[name]})",
                        tool,
                        f"{statistics.fmean(values):.4f} ± {spread(values):.4f}",
                        "-" if tool == "torchwork linear" else f"{statistics.fmean(diffs):+.4f}",
                        "-"
                        if tool == "torchwork linear"
                        else f"{sum(d < -BAR - 1e-9 for d in diffs)}/{len(diffs)}",
                        f"{values[seeds.index(42)]:.4f}" if 42 in seeds else "-",
                    ]
                )
    header = [
        "table (metric)",
        "tool",
        f"test metric, mean ± std over {len(seeds)} seeds",
        "minus linear, mean",
        f"seeds more than {BAR} below linear",
        "seed 42",
    ]
    print_report(
        f"torchwork small-table benchmark, seeds {args.seeds}", header, rows, started, args.out
    )


if __name__ == "__main__":
    main()
