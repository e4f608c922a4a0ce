"""What `--folds 5` costs: torchwork with and without it, and scikit-learn's `cross_validate`
of the pipeline a practitioner writes, on the same table, side by side in one run.

    python benchmarks/crossval.py [--rows 200000] [--tasks binary,regression] [--folds 5]
                                  [--digits] [--out FILE]

For each generated table (benchmarks/tables.py's: 20 numeric columns, one text column, a
binary or regression target) it runs, each as its own process:

- `torchwork run --data FILE --no-plots` (default settings), then the same with `--folds K`.
  From summary.json: the final fit's training seconds, the cross-validation's seconds (its
  K fits, scoring included) and their ratio, which the issue bounds at about K; and the
  whole processes' wall times. The table is read and encoded once either way.
- scikit-learn: `pandas.read_csv`, `make_column_transformer(OneHotEncoder, StandardScaler)`
  + LinearRegression / LogisticRegression, `cross_validate(pipeline, cv=K)` (stratified for
  the binary target) on the same train + val rows, then one fit of the pipeline: the wall
  time of the process, and the spread of its validation metric beside torchwork's.

`--digits` adds scikit-learn's digits as PNG class folders (images: the default CNN), with
torchwork alone. Requires scikit-learn and pandas.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_report
from tables import TARGET, TEXT, make_table, measured


def child_sklearn(path: str, task: str, folds: str, pool_rows: str) -> dict:
    started = time.perf_counter()
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.model_selection import KFold, StratifiedKFold, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.read_csv(path)
    y = frame.pop(TARGET)
    pool = np.load(pool_rows)
    X, y = frame.iloc[pool], y.iloc[pool]
    columns = make_column_transformer((OneHotEncoder(), [TEXT]), remainder=StandardScaler())
    regression = task == "regression"
    estimator = LinearRegression() if regression else LogisticRegression(max_iter=1000)
    pipeline = make_pipeline(columns, estimator)
    k = int(folds)
    cv = (
        KFold(k, shuffle=True, random_state=0)
        if regression
        else StratifiedKFold(k, shuffle=True, random_state=0)
    )
    cv_started = time.perf_counter()
    scores = cross_validate(pipeline, X, y, cv=cv, scoring="r2" if regression else "accuracy")
    cv_s = time.perf_counter() - cv_started
    fit_started = time.perf_counter()
    pipeline.fit(X, y)
    fit_s = time.perf_counter() - fit_started
    values = scores["test_score"].tolist()
    return {
        "cv_s": cv_s,
        "fit_s": fit_s,
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values),
        "inside_s": time.perf_counter() - started,
    }


def torchwork_run(data: Path, out: Path, *flags: str) -> tuple[float, float, dict]:
    command = [sys.executable, "-m", "torchwork", "run", "--data", str(data), "--no-plots"]
    wall, peak, _ = measured([*command, *flags, "--out", str(out)], out.parent)
    return wall, peak, json.loads((out / "summary.json").read_text())


def bench(name: str, data: Path, folds: int, folder: Path, metric: str, task: str | None) -> list:
    slug = name.split(",")[0].split(" ")[0]
    plain_wall, _, plain = torchwork_run(data, folder / f"{slug}-plain")
    cv_wall, _, with_cv = torchwork_run(data, folder / f"{slug}-cv", "--folds", str(folds))
    cv = with_cv["cross_validation"]
    fit_s = with_cv["seconds"]
    rows = [
        [
            name,
            "torchwork run",
            f"{plain_wall:.1f} s",
            f"{cv_wall:.1f} s ({cv_wall / plain_wall:.2f}x)",
            f"{fit_s:.2f} s",
            f"{cv['seconds']:.2f} s ({cv['seconds'] / fit_s:.2f}x)",
            f"{cv['mean']['val'][metric]:.4f} ± {cv['std']['val'][metric]:.4f}",
            f"{plain['metrics']['test'][metric]:.4f}",
        ]
    ]
    if task is not None:
        import pyarrow.csv as pcsv

        split = pcsv.read_csv(folder / f"{slug}-plain" / "predictions.csv").column("split")
        codes = np.array(split.to_pylist())
        pool_rows = folder / f"pool-{slug}.npy"
        np.save(pool_rows, np.flatnonzero((codes == "train") | (codes == "val")))
        command = [sys.executable, __file__, "--child", str(data), task, str(folds), str(pool_rows)]
        wall, _, out = measured(command, folder)
        answer = json.loads(out.strip().splitlines()[-1])
        rows.append(
            [
                name,
                f"scikit-learn cross_validate(cv={folds}) + fit",
                "-",
                f"{wall:.1f} s",
                f"{answer['fit_s']:.2f} s",
                f"{answer['cv_s']:.2f} s ({answer['cv_s'] / answer['fit_s']:.2f}x)",
                f"{answer['mean']:.4f} ± {answer['std']:.4f}",
                "-",
            ]
        )
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child_sklearn(*sys.argv[2:])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--tasks", default="binary,regression")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--digits", action="store_true", help="also the digits as images")
    parser.add_argument("--out", help="also write the table to this Markdown file")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for task in args.tasks.split(","):
            path = folder / f"{task}.csv"
            make_table(task, args.rows, path)
            metric = "r2" if task == "regression" else "accuracy"
            rows += bench(f"{task}, {args.rows:,} rows", path, args.folds, folder, metric, task)
        if args.digits:
            from images import make_digits

            digits = make_digits(folder)
            rows += bench("digits (images)", digits, args.folds, folder, "accuracy", None)
    header = [
        "data",
        "tool",
        "whole run, plain",
        f"whole run, --folds {args.folds}",
        "one fit",
        f"{args.folds} fits (x one fit)",
        "validation metric, mean ± std over folds",
        "test metric, plain",
    ]
    print_report("torchwork --folds benchmark", header, rows, started, args.out)


if __name__ == "__main__":
    main()
