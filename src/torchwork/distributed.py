"""Data-parallel training with torch.distributed, as started by torchrun.

torchwork does not invent its own launcher: `torchrun --nproc_per_node=N -m torchwork run`
(or `torchwork run --nproc N`, which calls torchrun) starts the processes, and this module
joins them into a process group (gloo on the CPU, NCCL on CUDA), shards the training rows and
reduces the losses so that every number printed equals the single-process one.

torch is imported only inside the functions that need it, so that the command line can
check a run's settings and say a mistake before paying for the import.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import shlex
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torchwork.errors import ConfigError

if TYPE_CHECKING:
    import torch

# How long a collective waits for the others. torchrun itself stops the group when a process
# dies; this only bounds a hang, and must outlast the main process writing the run folder.
TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class Group:
    """This process's place in a distributed run."""

    rank: int
    world: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """True when torchrun (or another launcher) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def restarted() -> bool:
    """True when torchrun restarted the group after a failure (--max-restarts)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def main_process() -> bool:
    """True in one process (rank 0) or in the first of several: the one that prints."""
    return int(os.environ.get("RANK", "0")) == 0


# `torchwork run --nproc` tells the processes it starts who it is and where to leave their
# closing message, through their environment.
_LAUNCHER = "TORCHWORK_LAUNCHER"  # the launcher's process id
_COMMAND = "TORCHWORK_COMMAND"  # the command as typed, for the run's record
_MESSAGES = "TORCHWORK_MESSAGES"  # a folder: each process's closing message, a file per rank
_AGENT_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")  # those torchrun's agent handles


@contextlib.contextmanager
def typed(argv: Sequence[str]) -> Iterator[None]:
    """While a command runs: `torchwork ARGV` as typed (whatever the script or alias that
    started it is called), for `typed_command`. The processes that `run --nproc` starts keep
    their launcher's, which names --nproc; those torchrun started by hand name torchrun."""
    if launched() and _COMMAND in os.environ:
        yield
        return
    command = shlex.join(["torchwork", *argv])
    if launched():
        world = os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", ""))
        command = f"torchrun --nproc_per_node={world} -m {command}"
    before = os.environ.get(_COMMAND)
    os.environ[_COMMAND] = command
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_COMMAND, None)
        else:
            os.environ[_COMMAND] = before


def typed_command() -> str:
    """The command that started this run, as typed; empty when the Python API did."""
    return os.environ.get(_COMMAND, "")


def launch(nproc: int, args: Sequence[str]) -> int:
    """`torchwork run --nproc N ARGS`: torchrun's own agent, as in `torchrun --standalone
    --nproc_per_node=N -m torchwork ARGS`, run in this process; returns the exit code.

    Run here rather than in a child process, the agent is what a signal to this process
    reaches: it passes SIGTERM or Ctrl-C on once to every process, which stops after its
    epoch with a checkpoint, as a single process does (a second signal stops them at once).
    The processes end with this one even when it is killed (`follow_launcher`). Their
    closing messages come here instead of to the terminal, and each different one is
    printed once, in place of torchrun's traceback; the exit code is theirs (2 for a
    mistake, 128 + N for signal N).
    """
    import logging
    import tempfile

    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default, without its banner
    if "LOGLEVEL" not in os.environ:  # torchrun's own way to ask for its log
        logging.disable(logging.ERROR)  # the agent's warnings repeat what is printed here
    handlers = {
        number: signal.getsignal(number)
        for number in (getattr(signal, name) for name in _AGENT_SIGNALS if hasattr(signal, name))
    }
    code, failures = 0, {}
    with tempfile.TemporaryDirectory(prefix="torchwork-") as messages:
        os.environ[_LAUNCHER], os.environ[_MESSAGES] = str(os.getpid()), messages
        options = torchrun.parse_args(
            [
                "--standalone",
                f"--nproc_per_node={nproc}",
                # after SIGTERM a process finishes its epoch; only one that hangs is killed
                f"--shutdown_timeout={int(TIMEOUT.total_seconds())}",
                "-m",
                "--",  # everything after this is torchwork's: torchrun must not guess at it
                "torchwork",
                *args,
            ]
        )
        try:
            torchrun.run(options)
        except ChildFailedError as e:
            # When one process fails the agent ends the others with SIGTERM, and counts
            # them as failed too: the cause is among the rest.
            failures = {
                rank: failure
                for rank, failure in e.failures.items()
                if failure.exitcode != -signal.SIGTERM
            } or e.failures
            first = failures[min(failures)].exitcode
            code = first if first > 0 else 128 - first
        except SignalException as e:
            code = 128 + e.sigval
        finally:
            for number, handler in handlers.items():  # the agent's raise SignalException
                signal.signal(number, handler)
            del os.environ[_LAUNCHER], os.environ[_MESSAGES]
        said: list[str] = []
        for rank in [*sorted(failures), *range(nproc)]:
            path = Path(messages, str(rank))
            if path.exists():
                line = path.read_text().rstrip("\n")
            elif rank in failures:
                ended = failures[rank].exitcode
                names = {s.value: s.name for s in signal.Signals}
                line = f"torchwork run: error: process {rank} of {nproc} " + (
                    f"was killed by {names.get(-ended, f'signal {-ended}')}"
                    if ended < 0
                    else f"failed with exit code {ended}"
                )
            else:
                continue
            if line not in said:
                said.append(line)
                print(line, file=sys.stderr)
    return code


def follow_launcher() -> None:
    """In a process that `torchwork run --nproc` started: end as soon as the launcher ends,
    even killed (SIGKILL) with no chance to pass anything on. Elsewhere nothing."""
    global _messages
    launcher = os.environ.pop(_LAUNCHER, None)  # popped: not for this process's own children
    _messages = os.environ.pop(_MESSAGES, None)
    if launcher is None:
        return
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1  # <linux/prctl.h>: the signal this process gets when its parent ends
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != int(launcher):  # it ended before the line above
            os.kill(os.getpid(), signal.SIGKILL)
        return
    import threading
    import time

    def watch() -> None:
        while os.getppid() == int(launcher):
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="torchwork-launcher", daemon=True).start()


_messages: str | None = None  # where this process leaves its closing message (follow_launcher)


def say_last(line: str) -> None:
    """A process's closing message (an error, a stop) on stderr; in a process that
    `torchwork run --nproc` started, left to the launcher instead, which prints every
    different one once."""
    if _messages is not None:
        path = Path(_messages, os.environ.get("RANK", "0"))
        try:
            path.with_suffix(".tmp").write_text(line + "\n")
            os.replace(path.with_suffix(".tmp"), path)
            return
        except OSError:  # the launcher is gone: say it here
            pass
    print(line, file=sys.stderr)


def start(device: torch.device) -> Group:
    """Join the process group torchrun set up: gloo on the CPU, NCCL on CUDA."""
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        # torchrun's store outlives a restart and still holds the dead attempt's addresses;
        # a prefix per attempt keeps a restarted process from dialling one of them
        # (pytorch/pytorch#167288).
        store, _, _ = next(dist.rendezvous("env://", timeout=TIMEOUT))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        store = dist.PrefixStore(f"torchwork/attempt-{attempt}", store)
        dist.init_process_group(
            backend=backend, store=store, rank=rank, world_size=world, timeout=TIMEOUT
        )
    return Group(rank, world, local_rank)


def barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


def stop() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def device_for(group: Group, device: torch.device) -> torch.device:
    """Each process on a node takes its own GPU."""
    import torch

    return torch.device("cuda", group.local_rank) if device.type == "cuda" else device


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum numbers over every process (one collective call)."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def sharded_batches(
    X: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator | None,
    group: Group,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
    """This process's part of each global batch, and the factor for its loss.

    Every process draws the same order (the same seeded generator, advanced the same way
    each epoch, so the shards change every epoch); global batch k holds the rows a single
    process would use, and process r takes every world-th of them, disjoint from the others.
    DDP averages gradients over processes, so each loss is scaled by
    rows_here * world / rows_in_batch: the average is then exactly the gradient of the mean
    over the global batch, even when the rows do not divide evenly.
    """
    import torch

    rows = len(X)
    order = (
        torch.randperm(rows, generator=generator) if generator is not None else torch.arange(rows)
    )
    steps = 1 if batch_size <= 0 or batch_size >= rows else math.ceil(rows / batch_size)
    size = rows if steps == 1 else batch_size
    for k in range(steps):
        chunk = order[k * size : (k + 1) * size]
        mine = chunk[group.rank :: group.world]
        if len(mine) == 0:
            # A last batch smaller than the world: still take part in the gradient
            # averaging, with a row whose loss counts for nothing.
            mine, scale = chunk[:1], 0.0
        else:
            scale = len(mine) * group.world / len(chunk)
        mine = mine.to(X.device)
        yield X[mine], y[mine], scale


def local_rows(rows: int, batch_size: int, group: Group) -> int:
    """How many training rows this process sees in an epoch (the same every epoch)."""
    size = rows if batch_size <= 0 or batch_size >= rows else batch_size
    total = 0
    for start in range(0, rows, size):
        chunk = min(size, rows - start)
        total += len(range(group.rank, chunk, group.world))
    return total


def shard(X: torch.Tensor, y: torch.Tensor, group: Group) -> tuple[torch.Tensor, torch.Tensor]:
    """Every world-th row, for evaluation split over the processes."""
    return X[group.rank :: group.world], y[group.rank :: group.world]


def check_batch(batch_size: int, processes: int) -> None:
    """Every process needs at least one row of each minibatch (checked before a launch by
    `run --nproc`, and by each process under torchrun)."""
    if 0 < batch_size < processes:
        raise ConfigError(
            f"--batch-size {batch_size} is smaller than --nproc {processes}: "
            "each process needs at least one row per step"
        )
