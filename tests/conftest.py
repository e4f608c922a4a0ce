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
