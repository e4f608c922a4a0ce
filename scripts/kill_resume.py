"""Kill a run with SIGKILL at random moments, resume it, and check that it ends bit-identical
to the same run uninterrupted.

    python scripts/kill_resume.py [--kills 50] [--seed 0]

For each kill: start `torchwork run` in a fresh process, wait until its first checkpoint is
on disk, wait a random further time, SIGKILL it, then `torchwork run --resume` (again until
it completes; a resume can itself be killed with --kill-resumes). Prints how many ended with
model parameters, metrics.csv and summary metrics identical to the uninterrupted run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Small but not instant: a few seconds of training with a checkpoint every few epochs.
FULL_BATCH = [
    "--epochs",
    "10000",
    "--noise",
    "0.05",
    "--checkpoint-every",
    "50",
    "--log-every",
    "100",
]
MINIBATCH = [
    "--epochs",
    "1500",
    "--noise",
    "0.05",
    "--batch-size",
    "8",
    "--shuffle",
    "--checkpoint-every",
    "7",
    "--log-every",
    "50",
    "--model",
    "mlp",
    "--hidden",
    "8",
    "--optimizer",
    "adam",
]
WORKLOADS = {"full-batch": FULL_BATCH, "minibatch": MINIBATCH}


def torchwork(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "torchwork", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def uninterrupted(args: list[str], folder: Path, name: str = "reference") -> Path:
    process = torchwork("run", *args, "--out", name, "--no-plots", cwd=folder)
    _, err = process.communicate(timeout=600)
    if process.returncode != 0:
        raise RuntimeError(f"the uninterrupted run failed: {err}")
    return folder / name


def killed_and_resumed(args: list[str], folder: Path, name: str, delay: float) -> tuple[Path, bool]:
    """Run, SIGKILL `delay` seconds after the first checkpoint, resume to the end.

    Returns the run folder and whether the kill landed before the run finished.
    """
    run = folder / name
    process = torchwork("run", *args, "--out", name, "--no-plots", cwd=folder)
    deadline = time.monotonic() + 120
    while not (run / "checkpoint-last.pt").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                f"the run ended before its first checkpoint: {process.stderr.read()}"
            )
        time.sleep(0.01)
    time.sleep(delay)
    killed = process.poll() is None
    if killed:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    if killed:
        resumed = torchwork("run", "--resume", name, "--no-plots", cwd=folder)
        _, err = resumed.communicate(timeout=600)
        if resumed.returncode != 0:
            raise RuntimeError(f"resume failed: {err}")
    return run, killed


def identical(a: Path, b: Path) -> list[str]:
    """What differs between two run folders' results (empty when bit-identical)."""
    from safetensors.torch import load_file

    problems = []
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    if first.keys() != second.keys() or not all(first[k].equal(second[k]) for k in first):
        problems.append("model parameters")
    if (a / "metrics.csv").read_bytes() != (b / "metrics.csv").read_bytes():
        problems.append("metrics.csv")
    metrics = [json.loads((f / "summary.json").read_text())["metrics"] for f in (a, b)]
    if metrics[0] != metrics[1]:
        problems.append("summary metrics")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    same = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        references = {
            name: uninterrupted(w, folder, f"reference-{name}") for name, w in WORKLOADS.items()
        }
        for i in range(args.kills):
            name = list(WORKLOADS)[i % len(WORKLOADS)]
            delay = rng.uniform(0.0, 2.0)
            run, killed = killed_and_resumed(WORKLOADS[name], folder, f"kill-{i}", delay)
            problems = identical(references[name], run)
            same += not problems
            print(
                f"kill {i + 1:3d} ({name}, {delay:.2f} s after the first checkpoint, "
                f"{'killed' if killed else 'finished first'}): "
                f"{'identical' if not problems else 'DIFFERENT: ' + ', '.join(problems)}",
                flush=True,
            )
    print(
        f"{same} of {args.kills} killed-and-resumed runs ended bit-identical to the uninterrupted run"
    )
    return 0 if same == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
