"""A run's checkpoints: what one holds (written and read by the pair of functions below),
when one is written, and the run folder's metrics.csv kept up to date with them."""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from torchwork import distributed
from torchwork.checkpoint import (
    rng_states,
    save_checkpoint,
    set_rng_states,
)
from torchwork.config import RunConfig
from torchwork.engine import History, TrainState
from torchwork.errors import (
    ConfigError,
    ModelFileError,
    TrainingDiverged,
    TrainingInterrupted,
)
from torchwork.fileio import write_text_atomic
from torchwork.runfolder import (
    CHECKPOINT_BEST,
    CHECKPOINT_LAST,
    METRICS,
)

if TYPE_CHECKING:
    from torchwork.workflow.session import Session
    from torchwork.workflow.signals import StopSignals


# What a resume may change, each with its flag: nothing that would change the result.
RESUME_FIELDS = {
    "train.epochs": "--epochs (to train longer)",
    "train.checkpoint_every": "--checkpoint-every",
    "plots": "--no-plots",
    "tensorboard": "--tensorboard",
}


def check_resume_fields(given: dict[str, str]) -> None:
    """Refuse a setting a resume cannot change; `given` maps each field to how the caller
    named it (a flag, or the field itself)."""
    for field, shown in given.items():
        if field not in RESUME_FIELDS:
            raise ConfigError(
                f"{shown} cannot change when resuming: it would change the result; only "
                f"{', '.join(RESUME_FIELDS.values())} may be given"
            )


CHECKPOINT_SECONDS = 30.0  # with --checkpoint-every 0, write a checkpoint this often


def checkpoint_contents(session: Session, state: TrainState, seconds: float) -> dict[str, Any]:
    """What a checkpoint holds: everything `restore` needs to go on bit for bit."""
    history = state.history
    return {
        "epoch": state.epoch,
        "model": session.model.state_dict(),
        "optimizer": session.optimizer.state_dict(),
        "history": {
            "records": history.records,
            "stopped_early": history.stopped_early,
            "best_epoch": history.best_epoch,
            "converged": history.converged,
            "epochs_run": history.epochs_run,
        },
        "early_stopping": {
            "best_loss": state.best_loss,
            "bad_epochs": state.bad_epochs,
            "best_state": state.best_state,
            "best_train_loss": state.best_train_loss,
            "flat_epochs": state.flat_epochs,
            "stop": state.stop,
        },
        "chosen": session.chosen or {},
        "cross_validation": session.cross_validation,
        "resumed": session.resumed,
        "generator": state.generator.get_state() if state.generator is not None else None,
        "rng": rng_states(),
        "config": checkpoint_config(session.config),
        "data_sha256": session.data_sha256,
        "seconds": seconds,
    }


def restore(session: Session, contents: dict[str, Any]) -> TrainState:
    """Put the model, optimizer, random generators and training state back as checkpointed."""
    try:
        session.model.load_state_dict(contents["model"])
        session.optimizer.load_state_dict(contents["optimizer"])
        history = History(**contents["history"])
        stopping = contents["early_stopping"]
        state = TrainState(
            epoch=contents["epoch"],
            history=history,
            best_loss=stopping["best_loss"],
            bad_epochs=stopping["bad_epochs"],
            best_state=stopping["best_state"],
            best_train_loss=stopping.get("best_train_loss", math.inf),
            flat_epochs=stopping.get("flat_epochs", 0),
            stop=stopping["stop"],
        )
        if contents.get("generator") is not None:
            state.generator = torch.Generator()
            state.generator.set_state(contents["generator"])
        set_rng_states(contents["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ModelFileError(
            f"the checkpoint in {session.out} does not fit this run: {e}"
        ) from None
    if state.best_state is not None:
        state.best_state = {k: v.to(session.device) for k, v in state.best_state.items()}
    return state


class Checkpointer:
    """The `on_epoch_end` hook: writes checkpoints and the history so far, and stops the run
    cleanly after a signal."""

    def __init__(
        self,
        session: Session,
        seconds_before: float,
        stop: StopSignals,
        log: Callable[[str], None],
    ) -> None:
        self.session = session
        self.every = session.config.train.checkpoint_every
        self.seconds_before = seconds_before
        self.started = time.perf_counter()
        self.last_write = self.started
        self.stop = stop
        self.log = log
        self.best_written: int | None = None
        self.last_epoch: int | None = None

    def __call__(self, state: TrainState) -> None:
        epochs = self.session.config.train.epochs
        due = (
            (self.every > 0 and state.epoch % self.every == 0)
            or (self.every == 0 and time.perf_counter() - self.last_write >= CHECKPOINT_SECONDS)
            or state.epoch == epochs
            or state.stop
        )
        received = self.stop.received
        if self.session.group is not None:
            # Every process checkpoints and stops at the same epoch, whichever of them got
            # the signal or saw the clock pass (one collective call), and names the same
            # signal (SIGTERM if any got it), so that they all say the same.
            sigints, sigterms, dues = distributed.all_sum(
                [received == signal.SIGINT, received == signal.SIGTERM, due], self.session.device
            )
            if sigints or sigterms:
                received = signal.SIGTERM if sigterms else signal.SIGINT
            due = dues > 0
        if due or received is not None:
            self.save(state)
        if received is not None:
            raise TrainingInterrupted(received, state.epoch, self.session.out)

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def save(self, state: TrainState) -> None:
        s = self.session
        check_finite(state, s.model)  # a checkpoint is only ever of a model that can go on
        if not s.main:
            self.last_write = time.perf_counter()
            return
        contents = checkpoint_contents(s, state, self.seconds())
        history = state.history
        save_checkpoint(s.out / CHECKPOINT_LAST, contents)
        if state.best_state is not None and history.best_epoch != self.best_written:
            save_checkpoint(s.out / CHECKPOINT_BEST, contents | {"model": state.best_state})
            self.best_written = history.best_epoch
        write_text_atomic(s.out / METRICS, history.to_csv())
        self.last_write = time.perf_counter()
        self.last_epoch = state.epoch


def check_finite(state: TrainState, model: torch.nn.Module) -> None:
    """Raise TrainingDiverged when the training loss or a parameter is NaN or infinite."""
    if state.train_loss is not None and not bool(torch.isfinite(state.train_loss)):
        raise TrainingDiverged(state.epoch - 1, float(state.train_loss))
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise TrainingDiverged(
            state.epoch - 1, float("nan"), " (the parameters are no longer finite)"
        )


def checkpoint_config(config: RunConfig) -> dict[str, Any]:
    """The config as a checkpoint keeps it: the data path made absolute, so a resume from
    another folder reads the same file."""
    stored = config.to_dict()
    if config.data.path:
        stored["data"]["path"] = str(Path(config.data.path).resolve())
    return stored


class TensorBoardLog:
    """An `on_epoch_end` hook: the losses recorded since the last call, for TensorBoard."""

    def __init__(self, folder: Path, logged: int = 0) -> None:
        self.writer = tensorboard_writer(folder)
        self.logged = logged  # history records already sent (before a resume)

    def __call__(self, state: TrainState) -> None:
        if len(state.history.records) > self.logged:
            for record in state.history.records[self.logged :]:
                for key, value in record.items():
                    if key != "epoch":
                        self.writer.add_scalar(
                            f"loss/{key.removesuffix('_loss')}", value, record["epoch"]
                        )
            self.logged = len(state.history.records)
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def tensorboard_writer(folder: Path | None) -> Any:
    """A TensorBoard SummaryWriter for `folder` (None: only check that one can be made)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "--tensorboard needs the tensorboard package: pip install 'torchwork[tensorboard]'"
        ) from None
    return SummaryWriter(str(folder)) if folder is not None else None
