"""Shared helpers for the benchmark scripts: timing, tables, machine description."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path


def median_seconds(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def interleaved_medians(
    cases: dict[str, Callable[[], object]], repeats: int = 3
) -> dict[str, float]:
    """Median wall time of each case, timed round-robin (one warm-up round first) so that
    every case meets the same machine state: caches, allocator, background load."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(repeats + 1):
        for name, fn in cases.items():
            started = time.perf_counter()
            fn()
            if round_:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) for name, t in times.items()}


def machine() -> str:
    import torch

    parts = [
        platform.processor() or platform.machine(),
        f"{os.cpu_count()} cores",
        f"Python {platform.python_version()}",
        f"torch {torch.__version__}",
    ]
    try:
        import pyarrow

        parts.append(f"pyarrow {pyarrow.__version__}")
    except ImportError:
        pass
    if torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(0))
    return ", ".join(parts)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def print_report(
    title: str,
    header: list[str],
    rows: list[list[str]],
    started: float,
    out: str | None,
    notes: list[str] | None = None,
) -> None:
    """A benchmark's result: its title and date, the machine, the table, any lines of notes
    below it (verdicts), the time it took; printed, and also written to `out` when given."""
    text = "\n".join(
        [
            f"{title} ({time.strftime('%Y-%m-%d')})",
            f"Machine: {machine()}",
            "",
            markdown_table(header, rows),
            "",
            *([*notes, ""] if notes else []),
            f"The whole benchmark took {time.perf_counter() - started:.0f} s.",
        ]
    )
    print(text)
    if out:
        Path(out).write_text(text + "\n")
