"""How many of this machine's cores a run may use: those other processes leave free.

torch starts a thread per core, and its threads wait for one another at every operation:
on a machine where another process keeps a core busy, the thread that shares that core holds
all the others back. Measured here on 2 cores, with one kept busy by another process: a table
MLP took 13.8 s with two threads against 3.0 s with one (3.1 s with two on the idle machine),
and a digits CNN 55 s against 7 s. So `--threads 0` (auto) counts the cores that other
processes kept busy while the run started (Linux's /proc/stat, less this process's own time)
and leaves them out; elsewhere, or given OMP_NUM_THREADS, torch's own count stands.

The thread count can change a model's last bits (a convolution's gradient sums in a different
order), so the run records the count it chose in its config: `--config config.toml`, or
`--threads N`, repeats the bits, and `--resume` goes on with the same count.

This module imports no torch: the command line starts watching before torch is imported.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

MIN_WATCH_SECONDS = 0.1  # the least time the cores are watched: shorter is noise


@dataclass(frozen=True)
class _Sample:
    at: float  # time.monotonic()
    busy: int  # clock ticks every core spent on any work since boot
    own: int  # ...and this process's share of them


_started: _Sample | None = None


def watch() -> None:
    """Start watching the cores (the command line does so before importing torch, so that
    the import is the time watched)."""
    global _started
    _started = _sample()


def free_cores(cores: int) -> tuple[int, str]:
    """Of `cores` (torch's thread count), those that other processes leave free (at least
    one), and what was seen, in words."""
    first = _started or _sample()
    if first is None:
        return cores, "other processes' load unknown here"
    wait = MIN_WATCH_SECONDS - (time.monotonic() - first.at)
    if wait > 0:
        time.sleep(wait)
    last = _sample()
    if last is None:
        return cores, "other processes' load unknown here"
    ticks = os.sysconf("SC_CLK_TCK")
    others = (
        max(0, (last.busy - first.busy) - (last.own - first.own)) / ticks / (last.at - first.at)
    )
    busy = min(cores - 1, int(others + 0.5))  # a core used more than half the time is busy
    if busy <= 0:
        return cores, f"other processes use {others:.1f} cores"
    return cores - busy, f"other processes keep {busy} of {cores} cores busy"


def _sample() -> _Sample | None:
    """The clock ticks of all the cores' work (/proc/stat: user, nice, system, irq, softirq,
    steal) and this process's (/proc/self/stat: user and system); None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    try:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
        # after the command's name: state is field 3 of stat(5), utime and stime 14 and 15
        utime, stime = int(own[11]), int(own[12])
    except (ValueError, IndexError):
        return None
    return _Sample(time.monotonic(), user + nice + system + irq + softirq + steal, utime + stime)
