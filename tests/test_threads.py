"""--threads: torch's CPU threads, chosen (auto) to leave out the cores other processes keep
busy, recorded in the run's config so that the run repeats its bits."""

from __future__ import annotations

import tomllib

import pytest
import torch

from torchwork import machine

FREE_CORES = machine.free_cores  # conftest gives the other tests all the threads


@pytest.fixture(autouse=True)
def measured(monkeypatch):
    monkeypatch.setattr(machine, "free_cores", FREE_CORES)


def samples(monkeypatch, *values: tuple[float, int, int]) -> None:
    """machine's view of the cores: (seconds, all work, this process's) in clock ticks."""
    given = iter(machine._Sample(*v) for v in values)
    monkeypatch.setattr(machine, "_sample", lambda: next(given))
    monkeypatch.setattr(machine, "_started", None)


@pytest.mark.parametrize(
    "all_work,own,cores,expected",
    [
        (100, 0, 2, 1),  # another process used a whole core of two for the second
        (100, 100, 2, 2),  # ...or this one did: its own work is no other's
        (40, 0, 2, 2),  # less than half a core is not a busy core
        (400, 0, 4, 1),  # every core busy: one thread all the same
        (250, 50, 8, 6),
    ],
)
def test_free_cores_leave_out_what_other_processes_keep_busy(
    monkeypatch, all_work, own, cores, expected
):
    ticks = 100  # a second's clock ticks on Linux
    monkeypatch.setattr(machine.os, "sysconf", lambda name: ticks)
    samples(monkeypatch, (10.0, 5000, 300), (11.0, 5000 + all_work, 300 + own))
    threads, seen = machine.free_cores(cores)
    assert threads == expected
    busy = cores - expected
    assert (f"keep {busy} of {cores} cores busy" in seen) if busy else ("use" in seen)


def test_off_linux_torch_keeps_its_count(monkeypatch):
    monkeypatch.setattr(machine, "_sample", lambda: None)
    monkeypatch.setattr(machine, "_started", None)
    assert machine.free_cores(3) == (3, "other processes' load unknown here")


def test_auto_threads_are_said_recorded_and_given_back(tw, tmp_path, monkeypatch):
    from torchwork.workflow import session

    monkeypatch.setattr(session, "DEFAULT_THREADS", 2)
    monkeypatch.setattr(
        session.machine, "free_cores", lambda cores: (1, f"other processes keep 1 of {cores}")
    )
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    code, out, err = tw("run", "--epochs", "3", "--no-plots", "--out", "busy")
    assert code == 0, err
    assert "| 1 thread\n" in out and "   Threads: 1 of 2, as other processes keep 1 of 2" in out
    config = tomllib.loads((tmp_path / "busy" / "config.toml").read_text())
    assert config["train"]["threads"] == 1  # --config config.toml repeats the bits
    summary = (tmp_path / "busy" / "summary.json").read_text()
    assert '"threads": 1' in summary
    assert torch.get_num_threads() == before  # the notebook's own count is back
    # Given, the count is the flag's, and nothing is said of other processes
    code, out, err = tw("run", "--epochs", "3", "--no-plots", "--threads", "2", "--out", "two")
    assert code == 0, err
    assert "| 2 threads\n" in out and "Threads:" not in out
    assert tomllib.loads((tmp_path / "two" / "config.toml").read_text())["train"]["threads"] == 2


def test_bad_threads_are_one_line(tw):
    code, _, err = tw("run", "--threads", "-1")
    assert code == 2 and "--threads must be 0 (auto) or 1 to 1024 (got -1)" in err
