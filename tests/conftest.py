import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(
    *args: str, cwd: Path, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m torchwork ARGS` in a fresh process, as a user would type it."""
    full_env = {**os.environ, "PYTHONHASHSEED": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "torchwork", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


@pytest.fixture(params=["pt2", "onnx"])
def fmt(request):
    """Each export format; ONNX skipped where its extra (onnxruntime, onnxscript) is missing."""
    if request.param == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    return request.param


@pytest.fixture
def cli(tmp_path):
    def call(*args: str, **kwargs):
        return run_cli(*args, cwd=tmp_path, **kwargs)

    return call


def assert_clean_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2, one line on stderr containing the fragments, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def tw(tmp_path, monkeypatch, capsys):
    """Call the CLI in this process (fast), in tmp_path: returns (exit code, stdout, stderr)."""
    from torchwork.cli import main

    monkeypatch.chdir(tmp_path)

    def call(*args: str):
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


def assert_one_line_error(outcome, *fragments: str) -> None:
    code, _, err = outcome
    assert code == 2, outcome
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def write_csv(path, columns: dict) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    pcsv.write_csv(pa.table(columns), path)


def regression_table(rows=10000, features=10, noise=5.0, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)) * rng.uniform(0.5, 20, features) + rng.uniform(
        -50, 50, features
    )
    w = rng.normal(size=features)
    y = X @ w + 3 + rng.normal(scale=noise, size=rows)
    return {**{f"f{i}": X[:, i] for i in range(features)}, "target": y}


def moons(rows=1000, noise=0.1, seed=0):
    """Two interleaved half-moons: not separable by a line."""
    import numpy as np

    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, np.pi, rows)
    label = rng.integers(0, 2, rows)
    x1 = np.where(label == 0, np.cos(angle), 1 - np.cos(angle)) + rng.normal(scale=noise, size=rows)
    x2 = np.where(label == 0, np.sin(angle), 0.5 - np.sin(angle)) + rng.normal(
        scale=noise, size=rows
    )
    return {"a": x1, "b": x2, "label": label}


# --- Trained runs shared by the whole session ----------------------------------------------
# Each is trained once, the first time a test asks for it, and read by tests of several
# modules: read them in place, and copy a run (shutil.copytree to tmp_path) to change or add
# files in it, so that no test depends on another or on the order they run in.


@pytest.fixture(scope="session")
def course_run(tmp_path_factory):
    """`torchwork run --epochs 100 --out course` in a fresh process, as the course does, with
    its pictures: (the run folder, what it printed)."""
    folder = tmp_path_factory.mktemp("course")
    result = subprocess.run(
        [sys.executable, "-m", "torchwork", "run", "--epochs", "100", "--out", "course"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return folder / "course", result.stdout


@pytest.fixture(scope="session")
def species(tmp_path_factory):
    """A multiclass table with string labels and a text feature, trained once in a fresh
    process with a validation split and pictures: (the folder holding iris.csv and the run
    folder `run`, what the run printed)."""
    import numpy as np

    folder = tmp_path_factory.mktemp("species")
    rng = np.random.default_rng(2)
    k = rng.integers(0, 3, 600)
    centers = np.array([[0, 0], [4, 0], [0, 4]])
    P = centers[k] + rng.normal(size=(600, 2))
    colour = np.where(rng.uniform(size=600) < 0.5, "red", "blue")
    names = np.array(["setosa", "versicolor", "virginica"])[k]
    write_csv(folder / "iris.csv", {"p": P[:, 0], "q": P[:, 1], "colour": colour, "species": names})
    result = run_cli(
        "run", "--data", "iris.csv", "--val", "0.1", "--train", "0.7", "--out", "run", cwd=folder
    )
    assert result.returncode == 0, result.stderr
    return folder, result.stdout


COLORS = ["blue", "green", "red"]


def small_tables(rows=200, seed=0) -> dict[str, dict]:
    """Three tables of the same rows: a binary and a multiclass one with a text column, and a
    numeric regression one whose features and target (about 1000) are far from scaled."""
    import numpy as np

    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=rows), rng.normal(size=rows) * 10 + 50
    color = rng.choice(COLORS, rows)
    red = color == "red"
    return {
        "binary": {"a": a, "b": b, "color": color, "label": np.where(a + red > 0.3, "yes", "no")},
        "multiclass": {
            "a": a,
            "color": color,
            "kind": np.where(a > 0.5, "high", np.where(a < -0.5, "low", "mid")),
        },
        "regression": {"a": a, "b": b, "price": 3 * a - 2 * b + 1000 + rng.normal(size=rows)},
    }


@pytest.fixture(scope="session")
def small_models(tmp_path_factory):
    """Tiny models trained in this process without pictures: the line (20 epochs), and a run
    of 30 epochs on each of small_tables() (the multiclass one an MLP with 8 hidden units),
    each run in the folder of its name beside the NAME.csv it came from.

    Returns {"folder": that folder, NAME: its model.safetensors, "tables": {NAME: the table}}.
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from torchwork.cli import main

    folder = tmp_path_factory.mktemp("small-models")
    tables = small_tables()
    flags = {"multiclass": ["--model", "mlp", "--hidden", "8"]}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        assert main(["run", "--epochs", "20", "--out", "line", "--no-plots"]) == 0
        for name, columns in tables.items():
            pcsv.write_csv(pa.table(columns), f"{name}.csv")
            args = ["--data", f"{name}.csv", "--epochs", "30", *flags.get(name, [])]
            assert main(["run", *args, "--out", name, "--no-plots"]) == 0
    return {
        "folder": folder,
        **{name: folder / name / "model.safetensors" for name in ("line", *tables)},
        "tables": {name: pa.table(columns) for name, columns in tables.items()},
    }


def write_digits(root: Path, per_class: int | None = None) -> Path:
    """scikit-learn's bundled digits (1,797 8x8 grey images of 0 to 9, values 0..16) as PNG
    class folders root/<digit>/<index>.png, grey scaled to 0..255; `per_class` keeps only
    the first that many of each digit."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    seen: dict[int, int] = {}
    for i, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        seen[label] = seen.get(label, 0) + 1
        if per_class is not None and seen[label] > per_class:
            continue
        path = root / str(label) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixels * 255 / 16).round().astype(np.uint8), "L").save(path)
    return root


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """The digits as class folders, and a run on them with every default setting (the
    quality bar), in a fresh process with its pictures: (the folder holding `digits/` and
    the run folder `run`, what the run printed)."""
    folder = tmp_path_factory.mktemp("digits")
    write_digits(folder / "digits")
    # About 30 s on an idle 2-core machine; a loaded one took six minutes.
    result = run_cli("run", "--data", "digits", "--out", "run", cwd=folder, timeout=900)
    assert result.returncode == 0, result.stderr
    return folder, result.stdout


@pytest.fixture(scope="session")
def small_table_files(tmp_path_factory) -> Path:
    """small_tables(rows=300) as binary.csv, multiclass.csv and regression.csv in one folder."""
    folder = tmp_path_factory.mktemp("small-tables")
    for name, columns in small_tables(rows=300).items():
        write_csv(folder / f"{name}.csv", columns)
    return folder


def write_mixed_table(path: Path) -> Path:
    """300 rows of a number `a`, a two-class text column `kind` and a numeric `y`: a table
    that is a regression, a classification or neither, by the flags, for the error cases."""
    import numpy as np

    rng = np.random.default_rng(1)
    write_csv(
        path,
        {"a": rng.normal(size=300), "kind": rng.choice(["x", "y"], 300), "y": rng.normal(size=300)},
    )
    return path


def serve_answer(model: Path, rows: list[dict]) -> dict:
    """What `torchwork serve` answers to POST /predict {"rows": rows}, from its WSGI app."""
    import io

    from torchwork.serve.app import make_app

    body = json.dumps({"rows": rows}).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/predict",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    statuses: list[str] = []
    answer = json.loads(
        b"".join(make_app(model)(environ, lambda status, _: statuses.append(status)))
    )
    assert statuses and statuses[0].startswith("200"), (statuses, answer)
    return answer


@pytest.fixture(autouse=True)
def _all_threads(monkeypatch):
    """Runs in the tests train on all of torch's threads, however busy the machine: a run's
    thread count can change a CNN's last bits, and tests compare runs' bits (test_threads
    tests the auto count itself)."""
    from torchwork import machine

    monkeypatch.setattr(machine, "free_cores", lambda cores: (cores, "as in the tests"))
