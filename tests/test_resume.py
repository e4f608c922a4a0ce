"""Work is never lost: checkpoints, resume, signals, divergence and write failures."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from conftest import assert_one_line_error

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import kill_resume


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of each workload, made once for the module."""
    made = {}

    def get(workload: str) -> Path:
        if workload not in made:
            folder = tmp_path_factory.mktemp(f"reference-{workload}")
            made[workload] = kill_resume.uninterrupted(kill_resume.WORKLOADS[workload], folder)
        return made[workload]

    return get


@pytest.mark.parametrize("workload", ["full-batch", "minibatch"])
def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path, workload, reference):
    args = kill_resume.WORKLOADS[workload]
    rng = random.Random(f"torchwork-{workload}")
    kills = 0
    for i in range(2):  # two kill points per workload, four in all
        run, killed = kill_resume.killed_and_resumed(
            args, tmp_path, f"kill-{i}", rng.uniform(0.05, 0.8)
        )
        kills += killed
        assert kill_resume.identical(reference(workload), run) == []
    assert kills >= 1  # at least one kill landed mid-training


def _start(tmp_path, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "torchwork", "run", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _resume_in_a_new_process(cwd: Path, folder: str, *args: str) -> None:
    resumed = subprocess.run(
        [sys.executable, "-m", "torchwork", "run", "--resume", folder, "--no-plots", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr


def _wait_for(path: Path, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _wait_for_a_later_checkpoint(path: Path, process, timeout=120) -> int:
    """Wait until the running process replaces the checkpoint at `path` with one of a later
    epoch (training is under way, past its first checkpoint); return that epoch."""

    def identity():  # each write is a new file moved into place: a new inode
        status = path.stat()
        return status.st_ino, status.st_mtime_ns, status.st_size

    first, seen = torch.load(path, weights_only=True)["epoch"], identity()
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"no checkpoint after epoch {first} in {timeout} s"
        if identity() != seen:
            seen = identity()
            epoch = torch.load(path, weights_only=True)["epoch"]
            if epoch > first:
                return epoch
        time.sleep(0.01)


def _read_stderr_until(process, text: str, timeout=60) -> str:
    """Read the process's stderr line by line until a line holds `text`; return what was read
    (the process is killed, and the test fails, if no such line comes within `timeout`)."""
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    read = []
    try:
        while True:
            line = process.stderr.readline()
            read.append(line)
            if text in line or not line:
                break
    finally:
        watchdog.cancel()
    assert text in read[-1], ("".join(read), process.poll())
    return "".join(read)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_writes_a_checkpoint_and_resume_completes(tmp_path, signum, code, reference):
    args = kill_resume.MINIBATCH
    process = _start(tmp_path, *args, "--out", "run", "--no-plots")
    _wait_for(tmp_path / "run" / "checkpoint-last.pt", process)
    # Training is under way: a later checkpoint replaced the first one.
    written = _wait_for_a_later_checkpoint(tmp_path / "run" / "checkpoint-last.pt", process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert "resume with: torchwork run --resume run" in err
    assert "Traceback" not in err
    checkpoint = torch.load(tmp_path / "run" / "checkpoint-last.pt", weights_only=True)
    assert 0 < written < checkpoint["epoch"] < 1500  # the signal's own checkpoint, mid-run
    _resume_in_a_new_process(tmp_path, "run")
    assert kill_resume.identical(reference("minibatch"), tmp_path / "run") == []


def test_checkpoint_holds_plain_values_and_every_generator(tw, tmp_path):
    code, _, err = tw(
        "run",
        "--epochs",
        "30",
        "--batch-size",
        "10",
        "--val",
        "0.2",
        "--train",
        "0.6",
        "--patience",
        "50",
        "--out",
        "r",
        "--no-plots",
        "--checkpoint-every",
        "10",
    )
    assert code == 0, err
    for name in ("checkpoint-last.pt", "checkpoint-best.pt"):
        contents = torch.load(tmp_path / "r" / name, weights_only=True)
        assert contents["format"] == "torchwork-checkpoint" and contents["epoch"] == 30
        assert set(contents["rng"]) == {"torch", "cuda", "numpy", "python"}
        assert isinstance(contents["generator"], torch.Tensor)
        assert contents["history"]["records"][0]["epoch"] == 0
        assert contents["early_stopping"]["best_state"] is not None
    best = torch.load(tmp_path / "r" / "checkpoint-best.pt", weights_only=True)
    last = torch.load(tmp_path / "r" / "checkpoint-last.pt", weights_only=True)
    assert all(
        best["model"][k].equal(last["early_stopping"]["best_state"][k]) for k in best["model"]
    )


def test_resume_can_train_longer_and_matches_a_longer_run(tw, tmp_path):
    common = ("--batch-size", "8", "--shuffle", "--noise", "0.1", "--no-plots")
    assert tw("run", "--epochs", "40", "--out", "short", *common)[0] == 0
    code, out, err = tw("run", "--resume", "short", "--epochs", "90")
    assert code == 0, err
    assert "Resuming short after epoch 39 of 90" in out
    assert tw("run", "--epochs", "90", "--out", "long", *common)[0] == 0
    assert kill_resume.identical(tmp_path / "long", tmp_path / "short") == []


RESUME_REFUSALS = [
    (("--resume", "short", "--lr", "0.5"), "--lr cannot change when resuming"),
    (("--resume", "short", "--seed", "1"), "--seed cannot change when resuming"),
    (("--resume", "short", "--data", "x.csv"), "--data cannot change when resuming"),
    (("--resume", "short", "--model", "mlp"), "--model cannot change when resuming"),
    (("--resume", "short", "--epochs", "5"), "less than the 20 epochs already trained"),
    (("--resume", "short", "--out", "x"), "--out cannot be used with --resume"),
    (("--resume", "nowhere"), "no such run folder"),
    (("--resume", "empty"), "has no checkpoint-last.pt"),
]


@pytest.mark.parametrize(
    ("args", "message"), RESUME_REFUSALS, ids=[" ".join(a) for a, _ in RESUME_REFUSALS]
)
def test_resume_refusals(tw, tmp_path, args, message):
    assert tw("run", "--epochs", "20", "--out", "short", "--no-plots")[0] == 0
    (tmp_path / "empty").mkdir()
    before = (tmp_path / "short" / "summary.json").read_bytes()
    assert_one_line_error(tw("run", *args), message)
    assert (tmp_path / "short" / "summary.json").read_bytes() == before


def test_resume_refuses_a_changed_data_file(tw, tmp_path):
    from conftest import regression_table, write_csv

    write_csv(tmp_path / "t.csv", regression_table(rows=200, features=2))
    assert tw("run", "--data", "t.csv", "--epochs", "20", "--out", "r", "--no-plots")[0] == 0
    write_csv(tmp_path / "t.csv", regression_table(rows=200, features=2, seed=5))
    assert_one_line_error(tw("run", "--resume", "r"), "changed since the run started")


def test_divergence_stops_keeps_the_last_good_checkpoint_and_exits_3(tw, tmp_path):
    code, _, err = tw(
        "run",
        "--loss",
        "mse",
        "--lr",
        "1e36",
        "--epochs",
        "50",
        "--log-every",
        "1",
        "--checkpoint-every",
        "1",
        "--out",
        "d",
        "--no-plots",
    )
    assert code == 3
    assert "training diverged at epoch" in err and "lower the learning rate" in err
    assert "last good checkpoint" in err and len(err.strip().splitlines()) == 1
    contents = torch.load(tmp_path / "d" / "checkpoint-last.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in contents["model"].values())
    assert (tmp_path / "d" / "metrics.csv").exists()
    assert not (tmp_path / "d" / "summary.json").exists()


def test_a_failed_checkpoint_write_keeps_the_previous_one_resumable(tw, tmp_path, monkeypatch):
    args = (
        "--epochs",
        "60",
        "--batch-size",
        "8",
        "--shuffle",
        "--noise",
        "0.1",
        "--checkpoint-every",
        "10",
        "--no-plots",
    )
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # the third checkpoint: half a file, then the disk is full
            Path(f).write_bytes(b"PK\x03\x04partial")
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", failing_save)
    assert_one_line_error(
        tw("run", *args, "--out", "broken"), "cannot write", "No space left on device"
    )
    monkeypatch.setattr(torch, "save", real_save)
    contents = torch.load(tmp_path / "broken" / "checkpoint-last.pt", weights_only=True)
    assert contents["epoch"] == 20
    assert not list((tmp_path / "broken").glob(".*.tmp"))
    code, _, err = tw("run", "--resume", "broken")
    assert code == 0, err
    assert tw("run", *args, "--out", "whole")[0] == 0
    assert kill_resume.identical(tmp_path / "whole", tmp_path / "broken") == []


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_malicious_pickle_is_refused_everywhere_and_never_runs(tw, tmp_path):
    marker = tmp_path / "pwned"
    evil = {"weights": torch.zeros(1), "bias": _Marker(str(marker))}
    torch.save(evil, tmp_path / "evil.pth")
    (tmp_path / "rows.csv").write_text("x,y\n0.5,0.6\n0.7,0.8\n")
    assert tw("run", "--epochs", "5", "--out", "run", "--no-plots")[0] == 0
    torch.save(
        {"format": "torchwork-checkpoint", "format_version": 1, "x": _Marker(str(marker))},
        tmp_path / "run" / "checkpoint-last.pt",
    )
    attempts = [
        ("predict", "--model", "evil.pth", "--x", "1"),
        ("inspect", "evil.pth"),
        ("evaluate", "--model", "evil.pth", "--data", "rows.csv"),
        ("run", "--resume", "run"),
    ]
    for args in attempts:
        assert_one_line_error(tw(*args), "refused to load")
    assert not marker.exists()


def test_model_files_that_do_not_match_their_description_are_refused(tmp_path):
    from safetensors.torch import save_file

    from torchwork import TorchworkError, load

    metadata = {
        "format": "torchwork",
        "format_version": "1",
        "model": json.dumps({"kind": "linear", "in_features": 3, "out_features": 1}),
    }
    save_file(
        {"linear_layer.weight": torch.zeros(1, 2), "linear_layer.bias": torch.zeros(1)},
        tmp_path / "shape.safetensors",
        metadata=metadata,
    )
    with pytest.raises(TorchworkError, match="has shape"):
        load(tmp_path / "shape.safetensors")
    save_file({"other.weight": torch.zeros(1, 3)}, tmp_path / "keys.safetensors", metadata=metadata)
    with pytest.raises(TorchworkError, match="missing"):
        load(tmp_path / "keys.safetensors")
    newer = metadata | {"format_version": "99"}
    save_file(
        {"linear_layer.weight": torch.zeros(1, 3), "linear_layer.bias": torch.zeros(1)},
        tmp_path / "newer.safetensors",
        metadata=newer,
    )
    with pytest.raises(TorchworkError, match="newer than this torchwork reads"):
        load(tmp_path / "newer.safetensors")


def test_a_newer_checkpoint_format_is_refused(tw, tmp_path):
    assert tw("run", "--epochs", "5", "--out", "run", "--no-plots")[0] == 0
    contents = torch.load(tmp_path / "run" / "checkpoint-last.pt", weights_only=True)
    torch.save(contents | {"format_version": 99}, tmp_path / "run" / "checkpoint-last.pt")
    assert_one_line_error(tw("run", "--resume", "run"), "checkpoint format 99, newer than")
    data = (tmp_path / "run" / "checkpoint-last.pt").read_bytes()
    (tmp_path / "run" / "checkpoint-last.pt").write_bytes(data[: len(data) // 3])
    assert_one_line_error(tw("run", "--resume", "run"), "corrupt or truncated")


def test_every_write_is_atomic(tmp_path, monkeypatch):
    """A crash inside any write leaves the earlier complete file, and no stray files."""
    from torchwork import TorchworkError
    from torchwork.fileio import write_text_atomic

    target = tmp_path / "summary.json"
    write_text_atomic(target, "old and complete")

    def crash(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(TorchworkError, match="Input/output error"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old and complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_a_second_ctrl_c_stops_at_once_and_leaves_whole_files(tmp_path):
    # Epochs of about a second, so that the first Ctrl-C is still waiting for its epoch's end.
    long_epochs = (
        "--end",
        "1000",
        "--step",
        "0.01",
        "--batch-size",
        "8",
        "--epochs",
        "4",
        "--checkpoint-every",
        "1",
        "--shuffle",
    )
    process = _start(tmp_path, *long_epochs, "--out", "run", "--no-plots")
    _wait_for(tmp_path / "run" / "checkpoint-last.pt", process)
    process.send_signal(signal.SIGINT)
    # The second Ctrl-C once the first has been handled (two sent at once could arrive as
    # one): the run says it will stop after this epoch, which is still under way.
    err = _read_stderr_until(process, "SIGINT: stopping after this epoch with a checkpoint")
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    err += rest
    assert process.returncode == 130, err
    assert "Traceback" not in err and "stopped at once" in err
    contents = torch.load(tmp_path / "run" / "checkpoint-last.pt", weights_only=True)
    assert contents["epoch"] > 0
    assert not list((tmp_path / "run").glob(".*.tmp"))
    # The checkpoint left loads and the run finishes from it (with no more of its long
    # epochs: resuming bit for bit is the other tests' subject).
    _resume_in_a_new_process(tmp_path, "run", "--epochs", str(contents["epoch"]))


def test_a_run_that_stops_on_convergence_resumes_bit_identical(tmp_path):
    args = [
        "--epochs", "100000", "--noise", "0.05", "--tol", "1e-6", "--tol-epochs", "50",
        "--checkpoint-every", "50", "--log-every", "100",
    ]  # fmt: skip
    reference = kill_resume.uninterrupted(args, tmp_path)
    s = json.loads((reference / "summary.json").read_text())
    assert s["converged"] and s["epochs_run"] < 100000
    run, killed = kill_resume.killed_and_resumed(args, tmp_path, "killed", 0.0)
    assert killed
    assert kill_resume.identical(reference, run) == []
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == s["epochs_run"]
