"""Step 3: the training loop with checkpoints; the first Ctrl-C or SIGTERM stops cleanly after
the epoch, a second at once."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from torchwork.engine import History, TrainState, fit
from torchwork.errors import (
    TrainingDiverged,
    TrainingError,
)
from torchwork.fileio import write_text_atomic
from torchwork.optim import learning_rate_schedule
from torchwork.runfolder import CHECKPOINT_LAST, METRICS, TENSORBOARD
from torchwork.workflow.checkpoints import Checkpointer, TensorBoardLog
from torchwork.workflow.signals import StopSignals

if TYPE_CHECKING:
    from torchwork.workflow.session import Session


def augmenter(session: Session) -> Callable[[Any, torch.Generator], Any] | None:
    """How training batches are augmented (--augment): each block that augments its tensor
    (pictures: flips, shifts) does so; None when no block does, or with --augment none."""
    how = session.config.data.augment
    blocks = getattr(session.data.encoder, "blocks", None) or []
    if how == "none" or not any(b.augments for b in blocks):
        return None
    from torchwork.kinds.base import Inputs

    def augment(X: Inputs, generator: torch.Generator) -> Inputs:
        return Inputs(b.augment(x, generator, how) for b, x in zip(blocks, X.tensors, strict=True))

    return augment


def fit_options(session: Session) -> dict[str, Any]:
    """The keyword arguments of engine.fit that the run's config sets, the same for the final
    model and for every fit of --folds / --repeats."""
    t = session.config.train
    return {
        "batch_size": t.batch_size,
        "patience": t.patience,
        "tol": t.tol,
        "tol_epochs": t.tol_epochs,
        "log_every": t.log_every,
        "eval_every": t.eval_every,
        "augment": augmenter(session),
        "schedule": learning_rate_schedule(t.schedule, t.lr, t.epochs),
    }


def train(
    session: Session,
    state: TrainState,
    seconds_before: float,
    log: Callable[[str], None],
    live: bool = False,
) -> tuple[History, float]:
    """Step 3: fit, with checkpoints; a divergence or a signal still leaves a resumable run.
    `live`: the loss curves in a notebook as training goes (engine.fit), on the main process."""
    t = session.config.train
    X, y = session.X, session.y
    batch = "full batch" if t.batch_size == 0 else f"batches of {t.batch_size}"
    until = (
        f"up to {t.epochs} epochs ({batch}; converged when the training loss improves by no "
        f"more than {t.tol:g} for {t.tol_epochs} epochs)"
        if t.tol > 0
        else f"{t.epochs} epochs ({batch})"
    )
    extras = []
    if augmenter(session) is not None:
        extras.append(f"augmentation {session.config.data.augment}")
    if t.schedule != "none":
        extras.append(f"{t.schedule} learning-rate schedule")
    log(f"3. Training for {until}" + (f"; {', '.join(extras)}" if extras else ""))
    with StopSignals(log) as stop:
        checkpointer = Checkpointer(session, seconds_before, stop, log)
        tensorboard = None
        if session.config.tensorboard and session.main:
            tensorboard = TensorBoardLog(session.out / TENSORBOARD, len(state.history.records))

        def on_epoch_end(state: TrainState) -> None:
            if tensorboard is not None:
                tensorboard(state)
            checkpointer(state)

        try:
            history = fit(
                session.train_model,
                X["train"],
                y["train"],
                X["test"],
                y["test"],
                session.loss_fn,
                session.optimizer,
                t.epochs,
                X_val=X["val"],
                y_val=y["val"],
                seed=t.seed,
                log=log,
                progress=sys.stderr.isatty(),
                live=live and session.main,
                state=state,
                on_epoch_end=on_epoch_end,
                group=session.group,
                **fit_options(session),
            )
        except TrainingDiverged as e:
            if session.main:
                write_text_atomic(session.out / METRICS, state.history.to_csv())
            kept = (
                f"; the last good checkpoint is kept in {session.out / CHECKPOINT_LAST}"
                if checkpointer.last_epoch or (session.out / CHECKPOINT_LAST).exists()
                else ""
            )
            raise TrainingDiverged(e.epoch, e.loss, kept) from None
        except RuntimeError as e:
            if session.group is None:
                raise
            # A collective failed: another process of the run died or hung.
            raise TrainingError(
                f"a process of this distributed run failed ({str(e).splitlines()[0][:200]}); "
                f"resume with: torchrun ... -m torchwork run --resume {session.out}"
            ) from None
        finally:
            if tensorboard is not None:
                tensorboard.close()
    return history, checkpointer.seconds()
