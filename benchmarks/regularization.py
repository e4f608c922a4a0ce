"""The linear classifier against scikit-learn's LogisticRegression, and the linear regression
with validation rows against least squares, on scikit-learn's bundled tables.

    python benchmarks/regularization.py [--seeds 42] [--out FILE]

For each classification table (breast cancer, wine, iris) and seed, on the rows torchwork
trained and tested on (its default split, 0.8 / 0.2 shuffled; and 0.6 / 0.2 / 0.2 with
validation rows):

- torchwork's default linear classifier (L2 penalty, C = 1 without validation rows), with
  `--l2-c none` (no penalty), and with `--val` (C chosen on the validation rows);
- scikit-learn's `LogisticRegression()` (its defaults: L2, C = 1, lbfgs, tol 1e-4) and its
  optimum (tol 1e-12), fitted on the same standardized training rows (torchwork's own
  encoding of them) and scored on the same test rows.

It prints test accuracy, the largest weight, and how far torchwork's weights are from
scikit-learn's optimum (the largest difference over the largest weight). For diabetes it
prints the linear regression's s1 coefficient with `--val` beside least squares'.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine

CLASSIFIERS = ("breast_cancer", "wine", "iris")
EXACT = {"tol": 1e-12, "max_iter": 100_000}


def write_table(path: Path, name: str) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    columns = {
        str(f).replace(" ", "_"): bunch.data[:, i] for i, f in enumerate(bunch.feature_names)
    }
    pcsv.write_csv(pa.table({**columns, "target": bunch.target}), path)


def torchwork_run(path: Path, out: Path, seed: int, *flags: str) -> tuple[dict, str]:
    """A run's summary.json and what it printed."""
    from torchwork.cli import main

    printed = io.StringIO()
    args = ["run", "--data", str(path), "--seed", str(seed), "--no-plots", "--out", str(out)]
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        code = main([*args, "--force", *flags])
    if code:
        raise SystemExit(f"torchwork {' '.join(args)} failed:\n{printed.getvalue()}")
    return json.loads((out / "summary.json").read_text()), printed.getvalue()


def rows_and_weights(folder: Path) -> tuple[dict, dict, np.ndarray, float | str]:
    """The run's standardized inputs and class codes by split, its weights and its C."""
    import torch
    from safetensors.torch import load_file

    from torchwork.config import RunConfig
    from torchwork.data import prepare_data
    from torchwork.workflow.session import fresh_model

    config = RunConfig.from_file(folder / "config.toml")
    data = prepare_data(config, lambda _: None)
    model = fresh_model(config, data)
    model.load_state_dict(load_file(folder / "model.safetensors"))
    X = {s: torch.cat([t.double() for t in x.tensors], 1).numpy() for s, x in data.X.items()}
    y = {s: codes.reshape(-1).numpy() for s, codes in data.y_raw.items()}
    return X, y, model.input_weights().detach().double().numpy(), config.train.l2_c


def classifier_rows(path: Path, folder: Path, seed: int) -> list[list[str]]:
    from sklearn.linear_model import LogisticRegression

    rows = []
    for label, flags in (
        ("torchwork default", ()),
        ("torchwork --l2-c none", ("--l2-c", "none")),
        ("torchwork --train 0.6 --val 0.2", ("--train", "0.6", "--val", "0.2")),
    ):
        out = folder / f"{path.stem}-{seed}-{len(rows)}"
        started = time.perf_counter()
        summary, _ = torchwork_run(path, out, seed, *flags)
        seconds = time.perf_counter() - started
        X, y, weights, C = rows_and_weights(out)
        accuracy = summary["metrics"]["test"]["accuracy"]
        gap = "-"
        if isinstance(C, float):
            optimum = LogisticRegression(C=C, **EXACT).fit(X["train"], y["train"]).coef_
            gap = f"{np.abs(weights - optimum).max() / np.abs(optimum).max():.1e}"
        rows.append(
            [label, f"{C:g}" if isinstance(C, float) else C, f"{accuracy:.4f}",
             f"{np.abs(weights).max():.4g}", gap, f"{summary['epochs_run']}", f"{seconds:.1f} s"]
        )  # fmt: skip
        if not flags:
            default = LogisticRegression().fit(X["train"], y["train"])
            optimum = LogisticRegression(C=1.0, **EXACT).fit(X["train"], y["train"]).coef_
            rows.append(
                ["scikit-learn LogisticRegression()", "1", f"{default.score(X['test'], y['test']):.4f}",
                 f"{np.abs(default.coef_).max():.4g}",
                 f"{np.abs(default.coef_ - optimum).max() / np.abs(optimum).max():.1e}", "-", "-"]
            )  # fmt: skip
    return rows


def diabetes_rows(path: Path, folder: Path, seed: int) -> list[list[str]]:
    rows = []
    for label, flags in (
        ("torchwork default", ()),
        ("torchwork --train 0.6 --val 0.2", ("--train", "0.6", "--val", "0.2")),
    ):
        summary, _ = torchwork_run(path, folder / f"diabetes-{seed}-{len(rows)}", seed, *flags)
        c = summary["coefficients"]
        s1 = c["learned"]["inputs"].index("s1")
        learned, exact = (np.array(c[k]["weight"]).reshape(-1) for k in ("learned", "closed_form"))
        rows.append(
            [label, f"{learned[s1]:.1f}", f"{exact[s1]:.1f}",
             f"{np.abs(learned - exact).max() / np.abs(exact).max():.1e}",
             f"{summary['metrics']['test']['r2']:.4f}", f"{summary['epochs_run']}",
             "yes" if summary["stopped_early"] else "no"]
        )  # fmt: skip
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42", help="comma-separated seeds")
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    parts = [f"torchwork's linear classifier against scikit-learn ({time.strftime('%Y-%m-%d')})"]
    parts.append(f"Machine: {machine()}")
    accuracies: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in (*CLASSIFIERS, "diabetes"):
            write_table(folder / f"{name}.csv", name)
        for seed in seeds:
            shown = seed == seeds[-1]  # the last seed's tables in full, the rest in the means
            for name in CLASSIFIERS:
                rows = classifier_rows(folder / f"{name}.csv", folder, seed)
                for row in rows:
                    accuracies.setdefault((name, row[0]), []).append(float(row[2]))
                header = ["tool", "C", "test accuracy", "largest weight",
                          "from the optimum", "epochs", "wall"]  # fmt: skip
                if shown:
                    parts += ["", f"{name}, seed {seed}", "", table(header, rows)]
            rows = diabetes_rows(folder / "diabetes.csv", folder, seed)
            header = ["tool", "s1 learned", "s1 least squares", "from least squares",
                      "test R²", "epochs", "stopped early"]  # fmt: skip
            if shown:
                parts += ["", f"diabetes (linear regression), seed {seed}", "", table(header, rows)]
    if len(seeds) > 1:
        means = [
            [name, tool, f"{np.mean(a):.4f} ± {np.std(a):.4f}", f"{min(a):.4f}"]
            for (name, tool), a in accuracies.items()
        ]
        header = ["table", "tool", f"test accuracy, mean ± std over {len(seeds)} seeds", "lowest"]
        parts += ["", table(header, means)]
    parts += ["", f"The whole benchmark took {time.perf_counter() - started:.0f} s."]
    report = "\n".join(parts)
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")


if __name__ == "__main__":
    main()
