"""A run's session: steps 1 and 2 done, everything the later steps use (the data on its
device, the model, loss function and optimizer, the run folder, the process group)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchwork import machine
from torchwork.config import RunConfig
from torchwork.data import Prepared
from torchwork.distributed import Group
from torchwork.errors import ConfigError
from torchwork.models import build_model


def resolve_device(name: str) -> torch.device:
    """auto picks CUDA when available, else the CPU; a named device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is available here: use --device cpu or auto")
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(
            "--device mps: Apple's MPS is not available here: use --device cpu or auto"
        )
    return torch.device(name)


# torch's own thread count (a thread per core, or OMP_NUM_THREADS), before any run set one
DEFAULT_THREADS = torch.get_num_threads()


def resolve_threads(threads: int, group: Group | None) -> tuple[int, str]:
    """The CPU threads a run trains with, set in torch: `threads` (--threads), else (auto)
    torch's count less the cores other processes keep busy (machine.free_cores); a process
    of a torchrun group, or one given OMP_NUM_THREADS, keeps the count it was given. With
    why, in words, when auto left cores out (else empty)."""
    fewer = ""
    if not threads and group is None and "OMP_NUM_THREADS" not in os.environ:
        threads, seen = machine.free_cores(DEFAULT_THREADS)
        if threads < DEFAULT_THREADS:
            fewer = f"{threads} of {DEFAULT_THREADS}, as {seen}"
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    return threads, fewer


@contextlib.contextmanager
def threads_kept() -> Iterator[None]:
    """torch's thread count as it was before a run: a notebook's later work keeps it."""
    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Session:
    """Steps 1 and 2 done: the data on the device, the model, loss function and optimizer."""

    config: RunConfig
    data: Prepared
    device: torch.device
    model: nn.Module
    train_model: nn.Module  # what fit trains: the model itself, or its DDP wrapper
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    X: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor]
    out: Path
    fingerprint: Future[str] | None = None  # the data file's sha256, computed on a thread
    group: Group | None = None  # this process's place in a torchrun group, if any
    chosen: dict[str, str] | None = None  # the settings that were auto, and why each was chosen
    cross_validation: dict[str, Any] | None = None  # --folds, --repeats: summary.json's key
    # each time the run was resumed: after which epoch, and --epochs before and after (a
    # learning-rate schedule spans --epochs, so raising it changes the later epochs' rates)
    resumed: list[dict[str, int]] = field(default_factory=list)

    @property
    def data_sha256(self) -> str | None:
        return self.fingerprint.result() if self.fingerprint is not None else None

    @property
    def main(self) -> bool:
        """Only the main process prints, writes the run folder, plots and saves."""
        return self.group is None or self.group.main

    @property
    def sizes(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.data.rows.items()}


def fresh_model(config: RunConfig, data: Prepared) -> torch.nn.Module:
    """The model of step 2 before training, the same every time for a config and data:
    initialised from the seed, then each block's layer given what it takes from the training
    rows (a picture layer: the training pictures' mean and standard deviation)."""
    torch.manual_seed(config.train.seed)
    blocks = getattr(data.encoder, "blocks", None)
    model = build_model(
        config.model.kind,
        in_features=data.in_features,
        out_features=data.encoder.out_features if data.encoder is not None else 1,
        hidden=config.model.hidden,
        task=data.task,
        blocks=data.encoder.model_blocks() if blocks is not None else None,
    )
    if blocks is not None:
        # What a block's layer takes from the training rows before training
        for block, layer, x in zip(blocks, model.blocks, data.X["train"].tensors, strict=True):
            block.prime(layer, x)
    return model


def model_title(model: torch.nn.Module) -> str:
    """A model as step 2 names it: the course's by class and kind ("LinearRegressionModel
    (params)"); a table's model in words ("CNN (blocks of 16, 32, 64 channels) for ...")."""
    spec = model.spec()
    if "blocks" not in spec:
        return f"{type(model).__name__} ({spec['kind']})"
    from torchwork.models import describe

    return describe(spec)
