"""Data-parallel training with torchrun on the CPU (gloo), as a user would start it."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import assert_clean_error, regression_table, write_csv

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(
    cwd: Path, *args: str, nproc: int = 2, extra: tuple[str, ...] = (), timeout: float = 240
):
    command = [
        *TORCHRUN,
        "--standalone",
        f"--nproc_per_node={nproc}",
        *extra,
        "-m",
        "--",
        "torchwork",
        "run",
        *args,
    ]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def single(cwd: Path, *args: str):
    result = subprocess.run(
        [sys.executable, "-m", "torchwork", "run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    return result


def parameters(folder: Path):
    return load_file(folder / "model.safetensors")


def summary(folder: Path):
    return json.loads((folder / "summary.json").read_text())


def test_two_processes_full_batch_match_one_process(tmp_path):
    args = ("--epochs", "100", "--noise", "0.02", "--no-plots", "--model", "linear")
    result = torchrun(tmp_path, *args, "--out", "two")
    assert result.returncode == 0, result.stderr
    assert (
        "2 processes" in result.stdout and result.stdout.count("1. Data") == 1
    )  # only rank 0 prints
    single(tmp_path, *args, "--out", "one")
    a, b = parameters(tmp_path / "two"), parameters(tmp_path / "one")
    assert all((a[k] - b[k]).abs().max() <= 1e-6 for k in a)
    # Each run records how it was started: torchrun by hand, or one process
    assert summary(tmp_path / "two")["command"] == (
        f"torchrun --nproc_per_node=2 -m torchwork run {' '.join(args)} --out two"
    )
    assert summary(tmp_path / "one")["command"] == f"torchwork run {' '.join(args)} --out one"
    for split, metrics in summary(tmp_path / "one")["metrics"].items():
        for name, value in metrics.items():
            assert summary(tmp_path / "two")["metrics"][split][name] == pytest.approx(
                value, rel=1e-5, abs=1e-7
            )


def test_two_processes_with_minibatches_reach_the_optimum(tmp_path):
    write_csv(tmp_path / "t.csv", regression_table(rows=4000, features=5, noise=2.0))
    result = torchrun(
        tmp_path,
        "--data",
        "t.csv",
        "--batch-size",
        "128",
        "--epochs",
        "40",
        "--out",
        "mb",
        "--no-plots",
    )
    assert result.returncode == 0, result.stderr
    s = summary(tmp_path / "mb")
    assert s["metrics"]["test"]["mse"] <= s["reference"]["metrics"]["test"]["mse"] * 1.01


def test_nproc_flag_launches_torchrun(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torchwork",
            "run",
            "--nproc",
            "2",
            "--epochs",
            "20",
            "--start",
            "0",
            "--out",
            "r",
            "--no-plots",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    assert "2 processes" in result.stdout and (tmp_path / "r" / "summary.json").exists()
    # The command as typed, --nproc 2 included: without it one process trains another model
    recorded = summary(tmp_path / "r")
    assert recorded["command"] == "torchwork run --nproc 2 --epochs 20 --start 0 --out r --no-plots"
    assert recorded["reproducibility"]["processes"] == 2
    card = (tmp_path / "r" / "MODEL_CARD.md").read_text()
    assert "`torchwork run --nproc 2 --epochs 20" in card


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_two_nodes_on_loopback_complete_a_run_together(tmp_path):
    args = ["-m", "--", "torchwork", "run", "--epochs", "50", "--out", "nodes", "--no-plots"]
    for _ in range(3):  # a free port can be taken by someone else before node 0 binds it
        port = free_port()
        common = [
            *TORCHRUN,
            "--nnodes",
            "2",
            "--nproc_per_node",
            "1",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
        ]
        nodes = []
        try:
            # Node 0 hosts the rendezvous; node 1 joins once it listens.
            nodes.append(
                subprocess.Popen(
                    [*common, "--node_rank", "0", *args],
                    cwd=tmp_path,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            deadline = time.monotonic() + 60
            while not _listening(port) and nodes[0].poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if nodes[0].poll() is not None:
                continue
            nodes.append(
                subprocess.Popen(
                    [*common, "--node_rank", "1", *args],
                    cwd=tmp_path,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            outputs = [p.communicate(timeout=240) for p in nodes]
            break
        finally:
            for p in nodes:
                if p.poll() is None:
                    p.kill()
                    p.communicate()
    assert [p.returncode for p in nodes] == [0, 0], outputs
    assert "2 processes" in outputs[0][0]
    assert (tmp_path / "nodes" / "summary.json").exists()


def _worker_pids(parent: int) -> dict[int, int]:
    """{rank: pid} of torchrun's worker processes."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            env = dict(
                item.split("=", 1)
                for item in (entry / "environ").read_text().split("\0")
                if "=" in item
            )
        except (OSError, ValueError):
            continue
        if "RANK" in env:
            found[int(env["RANK"])] = int(entry.name)
    return found


LONG = (
    "--epochs",
    "1000",
    "--batch-size",
    "8",
    "--shuffle",
    "--noise",
    "0.05",
    "--checkpoint-every",
    "20",
    "--log-every",
    "100",
    "--no-plots",
)


def _start_and_kill_rank_1(tmp_path, name, restarts):
    command = [
        *TORCHRUN,
        "--standalone",
        "--nproc_per_node=2",
        f"--max-restarts={restarts}",
        "--monitor-interval=0.5",
        "-m",
        "--",
        "torchwork",
        "run",
        *LONG,
        "--out",
        name,
    ]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / name / "checkpoint-last.pt").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    workers = _worker_pids(process.pid)
    assert set(workers) == {0, 1}, workers
    killed_at = time.monotonic()
    os.kill(workers[1], signal.SIGKILL)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err, time.monotonic() - killed_at


def test_killing_one_rank_ends_the_run_with_a_resumable_checkpoint(tmp_path):
    code, _, err, seconds = _start_and_kill_rank_1(tmp_path, "killed", restarts=0)
    assert code != 0 and seconds < 60
    assert "SIGKILL" in err or "Signal 9" in err or "failed" in err
    resumed = subprocess.run(
        [sys.executable, "-m", "torchwork", "run", "--resume", "killed", "--no-plots"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "killed" / "summary.json").exists()


def test_max_restarts_resumes_and_matches_the_uninterrupted_run(tmp_path):
    code, _, err, _ = _start_and_kill_rank_1(tmp_path, "restarted", restarts=1)
    assert code == 0, err
    whole = torchrun(tmp_path, *LONG, "--out", "whole")
    assert whole.returncode == 0, whole.stderr
    a, b = parameters(tmp_path / "restarted"), parameters(tmp_path / "whole")
    assert all(a[k].equal(b[k]) for k in a)
    assert (tmp_path / "restarted" / "metrics.csv").read_text() == (
        tmp_path / "whole" / "metrics.csv"
    ).read_text()


def test_a_validation_split_smaller_than_the_processes_with_early_stopping(tmp_path):
    # 50 rows: 1 validation row for 2 processes, so one of them has none.
    args = ("--train", "0.78", "--val", "0.02", "--patience", "5", "--epochs", "40", "--no-plots")
    result = torchrun(tmp_path, *args, "--out", "two")
    assert result.returncode == 0, result.stderr
    single(tmp_path, *args, "--out", "one")
    assert summary(tmp_path / "two")["epochs_run"] == summary(tmp_path / "one")["epochs_run"]
    one, two = (tmp_path / n / "metrics.csv" for n in ("one", "two"))
    assert (
        one.read_text().splitlines()[0]
        == two.read_text().splitlines()[0]
        == "epoch,train_loss,val_loss,test_loss"
    )


def test_two_processes_with_the_table_defaults_lbfgs_match_one_process(tmp_path):
    """L-BFGS's line search sees the loss of the whole global batch in every process, so
    both take the same steps, and the steps of one process."""
    write_csv(tmp_path / "t.csv", regression_table(rows=3000, features=5, noise=2.0))
    args = ("--data", "t.csv", "--no-plots")
    result = torchrun(tmp_path, *args, "--out", "two")
    assert result.returncode == 0, result.stderr
    single(tmp_path, *args, "--out", "one")
    two, one = summary(tmp_path / "two"), summary(tmp_path / "one")
    assert two["training"]["optimizer"] == one["training"]["optimizer"] == "lbfgs"
    assert two["converged"] and abs(two["epochs_run"] - one["epochs_run"]) <= 2
    a, b = parameters(tmp_path / "two"), parameters(tmp_path / "one")
    assert all((a[k] - b[k]).abs().max() <= 1e-4 for k in a)
    assert two["metrics"]["test"]["r2"] == pytest.approx(one["metrics"]["test"]["r2"], abs=1e-6)


def _nproc(cwd: Path, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "torchwork", "run", "--nproc", "2", *args],
        cwd=cwd,
        text=True,
        **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen},
    )


def _descendants(pid: int) -> list[int]:
    """Every process below pid (torchrun's agent and its workers, wherever they run)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def _ranks(pids: list[int]) -> list[int]:
    """Those of pids that are torchrun workers (they have a RANK) and still run."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if state != "Z" and (b"\0RANK=" in environ or environ.startswith(b"RANK=")):
            alive.append(pid)
    return alive


def _end_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def test_nproc_mistakes_found_by_the_processes_are_one_line_and_exit_2(tmp_path):
    write_csv(tmp_path / "t.csv", regression_table(rows=100, features=2))
    launcher = _nproc(tmp_path, "--data", "t.csv", "--target", "nosuch", "--out", "r")
    out, err = launcher.communicate(timeout=240)
    result = subprocess.CompletedProcess(launcher.args, launcher.returncode, out, err)
    assert_clean_error(result, "torchwork run: error: target column 'nosuch' is not in t.csv")


# A checkpoint every epoch: once there is one, training is under way.
STOPPABLE = ("--epochs", "1000", "--batch-size", "8", "--checkpoint-every", "1", "--no-plots")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_the_launcher_stops_every_process_as_one_process_stops(tmp_path, signum, code):
    """Ctrl-C (SIGINT to the terminal's process group) or SIGTERM to `torchwork run --nproc`:
    the two lines a single process prints, once each, and no process left running."""
    launcher = _nproc(tmp_path, *STOPPABLE, "--out", "run", start_new_session=True)
    processes = []
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "run" / "checkpoint-last.pt").exists():
            assert launcher.poll() is None, launcher.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        processes = _descendants(launcher.pid)
        assert len(_ranks(processes)) == 2, processes
        if signum == signal.SIGINT:
            os.killpg(launcher.pid, signum)
        else:
            launcher.send_signal(signum)
        _, err = launcher.communicate(timeout=120)
        name = signal.Signals(signum).name
        assert launcher.returncode == code, err
        lines = err.strip().splitlines()
        assert len(lines) == 2, err
        assert lines[0] == (
            f"{name}: stopping after this epoch with a checkpoint "
            "(press Ctrl-C again to stop at once)"
        )
        assert lines[1].startswith(f"torchwork run: error: {name} received: stopped after epoch")
        assert lines[1].endswith("with a checkpoint; resume with: torchwork run --resume run")
        assert _ranks(processes) == []
    finally:
        _end_all(_descendants(launcher.pid) + processes)
        if launcher.poll() is None:
            launcher.kill()
    checkpoint = torch.load(tmp_path / "run" / "checkpoint-last.pt", weights_only=True)
    assert checkpoint["epoch"] > 0 and not list((tmp_path / "run").glob(".*.tmp"))


def test_killing_the_launcher_ends_its_processes(tmp_path):
    # Not through pipes: a process left running would keep them open.
    launcher = _nproc(
        tmp_path, *LONG, "--out", "run", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    processes = []
    try:
        deadline = time.monotonic() + 120
        while len(_ranks(processes)) < 2:
            assert launcher.poll() is None, launcher.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
            processes = _descendants(launcher.pid)
        launcher.kill()
        launcher.wait(timeout=60)
        deadline = time.monotonic() + 10
        while _ranks(processes) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _ranks(processes) == []
    finally:
        _end_all(processes)


# `torchwork run` whose workflow fails as soon as it is called, as `--device cuda` does on a
# machine without one: the table is still being read on its threads, torch is not imported.
FAILING_RUN = """
import os, sys, types
from torchwork.errors import TorchworkError

def run(*args, **kwargs):
    how = os.environ["HOW"]
    if how == "error":
        raise TorchworkError("the run failed")
    if how == "interrupt":
        raise KeyboardInterrupt
    raise RuntimeError("a bug")

session = types.ModuleType("torchwork.workflow.run")
session.run = run
sys.modules["torchwork.workflow.run"] = session
from torchwork.cli import entry
entry()
"""


def test_the_exit_code_is_right_every_time_while_a_table_is_being_read(tmp_path):
    """With one OpenMP thread, as torchrun gives its processes: 30 tries, 10 at a time."""
    (tmp_path / "fail.py").write_text(FAILING_RUN)
    rows = "".join(f"2024-01-{i % 28 + 1:02d},{i * 0.5},{i % 7}\n" for i in range(50_000))
    (tmp_path / "dates.csv").write_text("day,x,y\n" + rows)
    expected = {  # how the run fails: its exit code and the end of what it prints
        "error": (2, "torchwork run: error: the run failed"),
        "interrupt": (130, "torchwork run: stopped at once; any file written is complete"),
        "bug": (1, "RuntimeError: a bug"),  # the last line of its traceback
    }
    outcomes = []
    for batch in range(3):
        tries = [
            (
                how,
                subprocess.Popen(
                    [sys.executable, "fail.py", "run", "--data", "dates.csv", "--out", f"r{i}"],
                    cwd=tmp_path,
                    env={**os.environ, "OMP_NUM_THREADS": "1", "HOW": how},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
            for i, how in enumerate([*expected] * 3 + ["error"], start=10 * batch)
        ]
        outcomes += [
            (how, p.wait(timeout=120), p.stderr.read().strip().splitlines()) for how, p in tries
        ]
    assert [(code, err[-1:]) for _, code, err in outcomes] == [
        (expected[how][0], [expected[how][1]]) for how, _, _ in outcomes
    ]
    assert all(len(err) == 1 for how, _, err in outcomes if how != "bug")
