"""Data-parallel training with torch.distributed, as started by torchrun.

torchwork does not invent its own launcher: `torchrun --nproc_per_node=N -m torchwork run`
(or `torchwork run --nproc N`, which calls torchrun) starts the processes, and this module
joins them into a process group (gloo on the CPU, NCCL on CUDA), shards the training rows and
reduces the losses so that every number printed equals the single-process one.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from torchwork.errors import TorchworkError

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


def start(device: torch.device) -> Group:
    """Join the process group torchrun set up: gloo on the CPU, NCCL on CUDA."""
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
    return torch.device("cuda", group.local_rank) if device.type == "cuda" else device


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum numbers over every process (one collective call)."""
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


def check_batch(batch_size: int, group: Group) -> None:
    if 0 < batch_size < group.world:
        raise TorchworkError(
            f"--batch-size {batch_size} is smaller than the {group.world} processes: "
            "each needs at least one row per step"
        )
