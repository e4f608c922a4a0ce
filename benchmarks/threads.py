"""Whole runs on an idle machine and on one where another process keeps a core busy, with
torch's threads as torchwork chooses them (`--threads 0`, auto) and as given, side by side.

    python benchmarks/threads.py [--rows 50000] [--repeats 1] [--out FILE]

Two workloads, each `torchwork run` as its own process, as a user types it: the default MLP
on a generated table (benchmarks/tables.py's regression table) and the default CNN on
scikit-learn's digits as class folders. Each is timed on the idle machine (auto), then with
one core kept busy by a Python loop in another process: with every core's thread
(`--threads` = the cores: what torch does by itself), with auto, and with one thread.
Prints the wall times, the threads each run used (its config.toml), and each busy time
over the idle one; `--out` writes the table as markdown.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table
from tables import make_table


def write_digits(root: Path) -> Path:
    """scikit-learn's digits as PNG class folders, as the tests write them."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        path = root / str(label) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixels * 255 / 16).round().astype(np.uint8), "L").save(path)
    return root


def timed_run(args: list[str], out: Path) -> tuple[float, int]:
    """A whole `torchwork run` in its own process: wall seconds, and the threads it used."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "torchwork", "run", *args, "--out", str(out), "--force"],
        check=True,
        capture_output=True,
        env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"},
    )
    seconds = time.perf_counter() - started
    threads = tomllib.loads((out / "config.toml").read_text())["train"]["threads"]
    return seconds, threads


def busy_core() -> subprocess.Popen:
    """Another process that keeps one core busy."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="rows of the table")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each case (the median)")
    parser.add_argument("--out", help="write the table as markdown here")
    options = parser.parse_args()
    import torch

    cores = torch.get_num_threads()
    folder = Path(tempfile.mkdtemp(prefix="torchwork-threads-"))
    make_table("regression", options.rows, folder / "table.csv")
    write_digits(folder / "digits")
    workloads = {
        f"table MLP, {options.rows:,} rows": ["--data", str(folder / "table.csv"), "--model",
                                              "mlp", "--no-plots"],
        "digits CNN, 1,797 images": ["--data", str(folder / "digits"), "--no-plots"],
    }  # fmt: skip
    rows = []
    for name, args in workloads.items():

        def median(extra: list[str], tag: str, args: list[str] = args) -> tuple[float, int]:
            runs = [timed_run([*args, *extra], folder / tag) for _ in range(options.repeats)]
            runs.sort()
            return runs[len(runs) // 2]

        time.sleep(5)  # the load average of the data's writing settles
        idle, idle_threads = median([], "idle")
        rows.append([name, "idle", "auto", f"{idle_threads}", f"{idle:.1f} s", "1.00x"])
        hog = busy_core()
        try:
            time.sleep(2)
            for label, extra in (
                (f"{cores} (every core)", ["--threads", str(cores)]),
                ("auto", []),
                ("1", ["--threads", "1"]),
            ):
                seconds, threads = median(extra, "busy")
                rows.append(
                    [name, "1 core busy", label, f"{threads}", f"{seconds:.1f} s",
                     f"{seconds / idle:.2f}x"]
                )  # fmt: skip
                print(" | ".join(rows[-1]), flush=True)
        finally:
            hog.kill()
    header = ["workload", "machine", "--threads", "threads used", "whole run", "over idle"]
    table = markdown_table(header, rows)
    print(f"\n{machine()}\n\n{table}")
    if options.out:
        Path(options.out).write_text(f"{machine()}\n\n{table}\n")


if __name__ == "__main__":
    main()
