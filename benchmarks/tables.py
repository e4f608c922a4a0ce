"""torchwork against scikit-learn and a hand-written PyTorch script on tables, each a whole
process, side by side in one run.

    python benchmarks/tables.py [--sizes 10000,200000,2000000] [--tasks regression,binary,multiclass]
                                [--models linear,mlp] [--repeats 1] [--out FILE]

For every table (generated here: 20 numeric columns in their own units, one text column of
5 categories, and a target that is linear plus a little non-linear signal: regression, a
noisy logistic label: binary, or one of four labels: multiclass) it runs, as a user would:

- `torchwork run --data FILE --no-plots` with default settings (and without --no-plots, to
  see what the pictures cost), and with `--model mlp`;
- the scikit-learn pipeline a practitioner writes: `pandas.read_csv`,
  `make_column_transformer(OneHotEncoder, StandardScaler)`, then LinearRegression /
  LogisticRegression, or MLPRegressor / MLPClassifier((64, 64), early_stopping=True);
- a hand-written PyTorch script: pandas, one-hot and scaling by hand, `nn.Linear` (or a
  64-64 MLP), Adam, the course's loop (full batch for 500 epochs; minibatches of 256 for
  20 epochs for the MLP).

Every tool is scored on the same test rows, taken from torchwork's `predictions.csv`. The
table prints wall time, training time, epochs, ms per epoch against the memory-bandwidth
floor (two passes of `X.sum()` over float32 training inputs of the same shape, measured in
this process), peak memory above an idle `import torch` process, the test metric (R² or
accuracy), and wall-time ratios to scikit-learn. A second table times one full-batch
training step of the linear model and of the default MLP against the same floor.
Requires scikit-learn and pandas (for the comparison rows only).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table

TARGET = "target"
TEXT = "colour"
FEATURES = 20


# The tables ------------------------------------------------------------------------------


def make_table(task: str, rows: int, path: Path, seed: int = 0) -> None:
    """A table as a practitioner's export would be: numbers in their own units, one text
    column, written as plain CSV (no quotes)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 20, FEATURES)
    offset = rng.uniform(-50, 50, FEATURES)
    Z = rng.normal(size=(rows, FEATURES))
    category = rng.integers(0, 5, rows)
    effect = np.array([0.0, 0.5, -0.5, 1.0, -1.0])
    w = rng.normal(size=FEATURES) / np.sqrt(FEATURES)
    linear = Z @ w + effect[category]
    curved = 0.12 * np.sin(2 * Z[:, 0]) + 0.08 * Z[:, 1] * Z[:, 2]
    if task == "regression":
        target = 3.0 * (linear + curved) + 10 + rng.normal(scale=0.25, size=rows)
    elif task == "binary":
        logit = 2.0 * (linear + 4 * curved)
        target = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    else:
        W = rng.normal(size=(FEATURES, 4)) / np.sqrt(FEATURES)
        logits = 2.0 * (
            Z @ W
            + effect[category][:, None] * np.array([1, -1, 0.5, 0])
            + 2 * curved[:, None] * np.array([1, 0, -1, 0])
        )
        names = np.array(["north", "east", "south", "west"])
        target = names[(logits + rng.gumbel(size=logits.shape)).argmax(1)]
    columns = {f"x{i}": Z[:, i] * scale[i] + offset[i] for i in range(FEATURES)}
    columns[TEXT] = np.array(list("abcde"))[category]
    columns[TARGET] = target
    pcsv.write_csv(pa.table(columns), path, pcsv.WriteOptions(quoting_style="none"))


# The other tools, each run as its own process ---------------------------------------------


def child_sklearn(path: str, test_rows: str, task: str, model: str) -> dict:
    started = time.perf_counter()
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.read_csv(path)
    y = frame.pop(TARGET)
    test = np.load(test_rows)
    train = np.setdiff1d(np.arange(len(frame)), test)
    columns = make_column_transformer((OneHotEncoder(), [TEXT]), remainder=StandardScaler())
    if model == "linear":
        estimator = (
            LinearRegression() if task == "regression" else LogisticRegression(max_iter=1000)
        )
    else:
        kind = MLPRegressor if task == "regression" else MLPClassifier
        estimator = kind(hidden_layer_sizes=(64, 64), early_stopping=True, random_state=0)
    pipeline = make_pipeline(columns, estimator)
    fit_started = time.perf_counter()
    pipeline.fit(frame.iloc[train], y.iloc[train])
    fit = time.perf_counter() - fit_started
    predicted = pipeline.predict(frame.iloc[test])
    truth = y.iloc[test]
    metric = (
        r2_score(truth, predicted) if task == "regression" else accuracy_score(truth, predicted)
    )
    epochs = getattr(estimator, "n_iter_", None)
    epochs = int(np.max(epochs)) if epochs is not None else None
    return {
        "train_s": fit,
        "epochs": epochs,
        "metric": metric,
        "inside_s": time.perf_counter() - started,
    }


def child_torch(path: str, test_rows: str, task: str, model: str) -> dict:
    """The script a learner of the course writes for a table, by hand."""
    import pandas as pd
    import torch
    from torch import nn

    frame = pd.read_csv(path)
    y_raw = frame.pop(TARGET)
    frame = pd.get_dummies(frame, columns=[TEXT], dtype=float)
    test = np.load(test_rows)
    train = np.setdiff1d(np.arange(len(frame)), test)
    X = torch.tensor(frame.to_numpy(), dtype=torch.float32)
    numeric = [i for i, c in enumerate(frame.columns) if not c.startswith(TEXT)]
    mean, std = X[train][:, numeric].mean(0), X[train][:, numeric].std(0)
    X[:, numeric] = (X[:, numeric] - mean) / std
    if task == "regression":
        values = torch.tensor(y_raw.to_numpy(), dtype=torch.float32).unsqueeze(1)
        y_mean, y_std = values[train].mean(), values[train].std()
        y = (values - y_mean) / y_std
        loss_fn, outputs = nn.MSELoss(), 1
    else:
        labels = sorted(y_raw.unique())
        index = torch.tensor(y_raw.map({v: i for i, v in enumerate(labels)}).to_numpy())
        if len(labels) == 2:
            y, loss_fn, outputs = index.float().unsqueeze(1), nn.BCEWithLogitsLoss(), 1
        else:
            y, loss_fn, outputs = index, nn.CrossEntropyLoss(), len(labels)
    X_train, y_train, X_test = X[train], y[train], X[test]
    torch.manual_seed(42)
    width = X.shape[1]
    if model == "linear":
        net = nn.Linear(width, outputs)
        epochs, batch, lr = 500, len(X_train), 0.01
    else:
        net = nn.Sequential(
            nn.Linear(width, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, outputs)
        )
        epochs, batch, lr = 20, 256, 0.001
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    started = time.perf_counter()
    for _epoch in range(epochs):
        net.train()
        order = torch.randperm(len(X_train)) if batch < len(X_train) else None
        for i in range(0, len(X_train), batch):
            rows = order[i : i + batch] if order is not None else slice(None)
            y_pred = net(X_train[rows])
            loss = loss_fn(y_pred, y_train[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    fit = time.perf_counter() - started
    net.eval()
    with torch.inference_mode():
        out = net(X_test)
    if task == "regression":
        predicted = (out.reshape(-1) * y_std + y_mean).numpy()
        truth = y_raw.to_numpy()[test]
        metric = 1 - ((truth - predicted) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    else:
        guess = (out.reshape(-1) > 0).long() if outputs == 1 else out.argmax(1)
        metric = float((guess == index[test]).float().mean())
    return {"train_s": fit, "epochs": epochs, "metric": float(metric)}


CHILDREN = {"sklearn": child_sklearn, "torch": child_torch}


# Measuring whole processes ----------------------------------------------------------------


def measured(command: list[str], cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, peak memory in MB, stdout) of one process, run from a fresh helper
    process: a process's largest child is all that ru_maxrss keeps, so each command gets
    a parent of its own."""
    helper = (
        "import json, subprocess, sys, time, resource\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "wall = time.perf_counter() - t\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps({'wall': wall, 'peak': peak, 'code': p.returncode, "
        "'out': p.stdout, 'err': p.stderr[-3000:]}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", helper, *command], cwd=cwd, capture_output=True, text=True
    )
    answer = json.loads(result.stdout)
    if answer["code"] != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{answer['err']}")
    return answer["wall"], answer["peak"], answer["out"]


def idle_torch_mb(cwd: Path) -> float:
    return measured([sys.executable, "-c", "import torch"], cwd)[1]


def floor_ms(rows: int, width: int) -> float:
    """Two passes of X.sum() over float32 inputs of this shape: forward and backward each
    read the inputs once."""
    import torch

    X = torch.randn(rows, width)
    X.sum()
    times = []
    for _ in range(50):
        started = time.perf_counter()
        X.sum()
        times.append(time.perf_counter() - started)
    return 2 * statistics.median(times) * 1000


def step_ms(kind: str, rows: int, width: int, repeats: int = 20) -> float:
    """One full-batch training step (forward, loss, backward, optimizer) as torchwork's fit
    takes it: the model from build_model, the inputs feature-major where it asks for that."""
    import torch

    from torchwork.engine import feature_major, train_step
    from torchwork.models import build_model
    from torchwork.optim import make_loss, make_optimizer

    torch.manual_seed(0)
    model = build_model(kind, width, 1)
    X, y = torch.randn(rows, width), torch.randn(rows, 1)
    if getattr(model, "feature_major_inputs", False):
        X = feature_major(X)
    optimizer = make_optimizer("adam", model.parameters(), lr=0.001)
    loss_fn = make_loss("mse")
    batches = [(X, y)]
    train_step(model, batches, loss_fn, optimizer)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        float(train_step(model, batches, loss_fn, optimizer))
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


# One table --------------------------------------------------------------------------------


def bench_table(task: str, rows: int, models: list[str], repeats: int, folder: Path) -> list[dict]:
    import pyarrow.csv as pcsv

    path = folder / f"{task}-{rows}.csv"
    if not path.exists():
        make_table(task, rows, path)
    results: list[dict] = []
    for model in models:
        cases = {}
        extra = ["--model", "mlp"] if model == "mlp" else []
        cases["torchwork --no-plots"] = ["--no-plots"]
        if model == "linear":
            cases["torchwork (with plots)"] = []
        runs: dict[str, list[dict]] = {
            name: [] for name in [*cases, "scikit-learn", "hand-written PyTorch"]
        }
        for attempt in range(repeats):
            for name, flags in cases.items():
                out = folder / f"run-{task}-{rows}-{model}-{len(runs[name])}"
                command = [
                    sys.executable, "-m", "torchwork", "run", "--data", str(path),
                    "--out", str(out), "--force", *extra, *flags,
                ]  # fmt: skip
                wall, peak, _ = measured(command, folder)
                summary = json.loads((out / "summary.json").read_text())
                metric = "r2" if task == "regression" else "accuracy"
                runs[name].append(
                    {
                        "wall": wall,
                        "peak": peak,
                        "train_s": summary["seconds"],
                        "epochs": summary["epochs_run"],
                        "metric": summary["metrics"]["test"][metric],
                        "inputs": len(summary["data"]["inputs"]),
                        "train_rows": summary["rows"]["train"],
                        "chosen": summary["training"],
                        "out": out,
                    }
                )
            if attempt == 0:
                split = pcsv.read_csv(runs["torchwork --no-plots"][0]["out"] / "predictions.csv")
                test_rows = folder / f"test-{task}-{rows}-{model}.npy"
                codes = np.array(split.column("split").to_pylist())
                np.save(test_rows, np.flatnonzero(codes == "test"))
            for name, child in (("scikit-learn", "sklearn"), ("hand-written PyTorch", "torch")):
                command = [
                    sys.executable, __file__, "--child", child, str(path), str(test_rows), task, model,
                ]  # fmt: skip
                wall, peak, out = measured(command, folder)
                answer = json.loads(out.strip().splitlines()[-1])
                runs[name].append({"wall": wall, "peak": peak, **answer})
        first = runs["torchwork --no-plots"][0]
        for name, found in runs.items():
            results.append(
                {
                    "table": f"{task}, {rows:,} rows",
                    "model": model,
                    "tool": name,
                    "rows": rows,
                    "train_rows": first["train_rows"],
                    "inputs": first["inputs"],
                    "wall": statistics.median(r["wall"] for r in found),
                    "train_s": statistics.median(r["train_s"] for r in found),
                    "epochs": found[0].get("epochs"),
                    "peak": statistics.median(r["peak"] for r in found),
                    "metric": statistics.median(r["metric"] for r in found),
                    "chosen": found[0].get("chosen"),
                }
            )
    return results


def format_results(results: list[dict], idle_mb: float) -> str:
    rows = []
    floors: dict[tuple[int, int], float] = {}
    for r in results:
        key = (r["train_rows"], r["inputs"])
        if key not in floors:
            floors[key] = floor_ms(*key)
        sklearn = next(
            x["wall"]
            for x in results
            if x["table"] == r["table"] and x["model"] == r["model"] and x["tool"] == "scikit-learn"
        )
        per_epoch = r["train_s"] / r["epochs"] * 1000 if r.get("epochs") else None
        inputs_mb = r["rows"] * r["inputs"] * 4 / 2**20
        above = r["peak"] - idle_mb
        peak = (
            f"{r['peak']:.0f} MB (+{above:.0f}, {above / inputs_mb:.1f}x)"
            if r["tool"] != "scikit-learn"
            else f"{r['peak']:.0f} MB"
        )
        rows.append(
            [
                r["table"],
                r["model"],
                r["tool"],
                f"{r['wall']:.2f} s",
                f"{r['wall'] / sklearn:.2f}x",
                f"{r['train_s']:.2f} s",
                str(r["epochs"]) if r.get("epochs") is not None else "-",
                f"{per_epoch:.1f} ms ({per_epoch / floors[key]:.0f}x)" if per_epoch else "-",
                peak,
                f"{r['metric']:.4f}",
            ]
        )
    header = [
        "table",
        "model",
        "tool",
        "wall",
        "wall / scikit-learn",
        "training",
        "epochs",
        "per epoch (x floor)",
        "peak memory (above idle torch, x float32 inputs)",
        "test R² / accuracy",
    ]
    floor_lines = [
        f"- floor for {rows:,} x {width}: {ms:.2f} ms (2 x `X.sum()`)"
        for (rows, width), ms in floors.items()
    ]
    return markdown_table(header, rows) + "\n\n" + "\n".join(floor_lines)


def matmul_gflops() -> float:
    """This machine's float32 matrix-product rate (1024 x 1024 x 1024), for the compute
    floor of an MLP step."""
    import torch

    A, B = torch.randn(1024, 1024), torch.randn(1024, 1024)
    A @ B
    times = []
    for _ in range(10):
        started = time.perf_counter()
        A @ B
        times.append(time.perf_counter() - started)
    return 2 * 1024**3 / statistics.median(times) / 1e9


def format_steps(shapes: list[tuple[int, int]]) -> str:
    """One full-batch step of each model against both floors: reading the inputs twice
    (bandwidth), and the step's multiply-adds at this machine's matrix-product rate."""
    rate = matmul_gflops()
    rows = []
    for n, width in shapes:
        floor = floor_ms(n, width)
        for kind in ("linear", "mlp"):
            ms = step_ms(kind, n, width, repeats=20 if kind == "linear" else 5)
            sizes = [width, 1] if kind == "linear" else [width, 64, 64, 1]
            # three products a layer: forward, and backward's two
            flops = sum(2 * n * a * b for a, b in itertools.pairwise(sizes)) * 3
            compute = flops / (rate * 1e9) * 1000
            rows.append(
                [
                    f"{n:,} x {width}",
                    kind,
                    f"{ms:.2f} ms",
                    f"{floor:.2f} ms ({ms / floor:.1f}x)",
                    f"{compute:.2f} ms ({ms / compute:.1f}x)",
                ]
            )
    header = ["training inputs", "model", "full-batch step", "bandwidth floor", "compute floor"]
    return markdown_table(header, rows) + f"\n\nMatrix products here: {rate:.0f} GFLOP/s."


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(CHILDREN[sys.argv[2]](*sys.argv[3:])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,200000,2000000")
    parser.add_argument("--tasks", default="regression,binary,multiclass")
    parser.add_argument("--models", default="linear,mlp")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved runs per tool (median)")
    parser.add_argument(
        "--folder", help="keep the tables and runs here (default: a temporary folder)"
    )
    parser.add_argument("--out", help="also write the tables to this Markdown file")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    tasks = args.tasks.split(",")
    models = args.models.split(",")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.folder or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        idle = idle_torch_mb(folder)
        results = []
        for rows in sizes:
            for task in tasks:
                found = bench_table(task, rows, models, args.repeats, folder)
                results += found
                print(format_results(found, idle), flush=True)
        shapes = sorted({(r["train_rows"], r["inputs"]) for r in results if r["model"] == "linear"})
        text = (
            f"torchwork table benchmarks ({time.strftime('%Y-%m-%d')})\n"
            f"Machine: {machine()}; idle `import torch`: {idle:.0f} MB\n\n"
            + format_results(results, idle)
            + "\n\nOne full-batch training step (Adam), against the bandwidth floor:\n\n"
            + format_steps(shapes[:2])
            + "\n"
        )
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
