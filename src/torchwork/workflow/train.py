"""Step 3: the training loop with checkpoints; the first Ctrl-C or SIGTERM stops cleanly after
the epoch, a second at once. Before it, a linear classifier's --l2-c auto (choose_l2_c)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from torchwork.config import AUTO, L2_C_DEFAULT, L2_C_GRID, RunConfig
from torchwork.data import EVAL_ROWS, Prepared, evaluation_batches
from torchwork.distributed import Group
from torchwork.engine import History, TrainState, fit, test_step
from torchwork.errors import (
    ConfigError,
    TrainingDiverged,
    TrainingError,
)
from torchwork.fileio import write_text_atomic
from torchwork.optim import learning_rate_schedule, optimizer_for
from torchwork.runfolder import CHECKPOINT_LAST, METRICS, TENSORBOARD
from torchwork.workflow.checkpoints import Checkpointer, TensorBoardLog
from torchwork.workflow.session import Session, fresh_model
from torchwork.workflow.signals import StopSignals


def augmenter(session: Session) -> Callable[[Any, torch.Generator], Any] | None:
    """How training batches are augmented (--augment): each block that augments its tensor
    (pictures: flips, shifts) does so; None when no block does, or with --augment none."""
    return _augmenter(session.config, session.data)


def _augmenter(config: RunConfig, data: Prepared) -> Callable[[Any, torch.Generator], Any] | None:
    how = config.data.augment
    blocks = getattr(data.encoder, "blocks", None) or []
    if how == "none" or not any(b.augments for b in blocks):
        return None
    from torchwork.kinds.base import Inputs

    def augment(X: Inputs, generator: torch.Generator) -> Inputs:
        return Inputs(b.augment(x, generator, how) for b, x in zip(blocks, X.tensors, strict=True))

    return augment


def fit_options(session: Session) -> dict[str, Any]:
    """The keyword arguments of engine.fit that the run's config sets, the same for the final
    model and for every fit of --folds / --repeats."""
    return _fit_options(session.config, session.data)


def _fit_options(config: RunConfig, data: Prepared) -> dict[str, Any]:
    t = config.train
    return {
        "batch_size": t.batch_size,
        "patience": t.patience,
        "tol": t.tol,
        "tol_epochs": t.tol_epochs,
        "log_every": t.log_every,
        "eval_every": t.eval_every,
        "augment": _augmenter(config, data),
        "schedule": learning_rate_schedule(t.schedule, t.lr, t.epochs),
        "l2_c": t.l2_c if isinstance(t.l2_c, float) else None,
    }


def choose_l2_c(
    config: RunConfig,
    data: Prepared,
    model: nn.Module,
    loss_fn: nn.Module,
    X: dict[str, Any],
    y: dict[str, torch.Tensor],
    group: Group | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """--l2-c auto, in place: the C (config.L2_C_GRID) of a linear classifier with the lowest
    validation loss, each C's model trained from the run's seed to convergence as the final
    model will be; without validation rows scikit-learn's C = 1. Returns why, as
    choose_training does ({} when nothing was chosen).

    A model it does not apply to (a regression, whose linear model stays least squares; an
    MLP; a layer that learns its own features) gets none: auto becomes none, and a C given
    for it is a ConfigError. In a process group the main process chooses, and tells the rest.
    """
    t = config.train
    weights = getattr(model, "l2_weights", lambda: None)()
    if data.task == "regression" or config.model.kind != "linear" or not weights:
        if t.l2_c not in (AUTO, "none"):
            raise ConfigError(f"--l2-c {t.l2_c:g} would be ignored: {_no_penalty(config, data)}")
        t.l2_c = "none"
        return {}
    if t.l2_c != AUTO:
        return {}
    if not len(X["val"]):
        t.l2_c = L2_C_DEFAULT
        return {"l2_c": "no validation rows to choose it on: scikit-learn's default"}
    losses = None
    if log is not None:  # a fit a C: said before the pause
        grid = ", ".join(f"{C:g}" for C in L2_C_GRID)
        log(f"   Choosing --l2-c among {grid} on the {len(X['val']):,} validation rows: a fit each")
    if group is None or group.main:
        losses = {C: _validation_loss(config, data, C, loss_fn, X, y) for C in L2_C_GRID}
    if group is not None:
        import torch.distributed as dist

        shared = [losses]
        dist.broadcast_object_list(shared, src=0)
        losses = shared[0]
    t.l2_c = min(losses, key=losses.__getitem__)  # the first of equals: the stronger penalty
    grid = ", ".join(f"{C:g}" for C in losses)
    shown = ", ".join(f"{loss:.4g}" for loss in losses.values())
    return {
        "l2_c": f"the lowest validation loss of C = {grid}, each fitted to convergence: {shown}"
    }


def _no_penalty(config: RunConfig, data: Prepared) -> str:
    """Why a model gets no L2 penalty, and what to write instead."""
    if data.task == "regression":
        why = "a regression's linear model is least squares, without a penalty"
    elif config.model.kind != "linear":
        why = f"it is a linear classifier's penalty, and --model {config.model.kind} is none"
    else:
        learned = sorted(set(data.kinds) - {"number", "category", "date"})
        layers = f"the {', '.join(learned)} column's layer" if learned else "a layer of this model"
        why = (
            "it is the penalty of a linear classifier of numbers and categories, and "
            f"{layers} learns its own features"
        )
    return f"{why}; drop --l2-c (or give --l2-c none)"


def _validation_loss(
    config: RunConfig,
    data: Prepared,
    C: float,
    loss_fn: nn.Module,
    X: dict[str, Any],
    y: dict[str, torch.Tensor],
) -> float:
    """The validation loss of the model trained, as the run trains it, with --l2-c C."""
    t = config.train
    model = fresh_model(config, data).to(y["train"].device)
    optimizer = optimizer_for(t.optimizer, model, lr=t.lr, momentum=t.momentum)
    fit(
        model,
        X["train"],
        y["train"],
        X["test"][:0],  # the test rows are for the chosen model alone
        y["test"][:0],
        loss_fn,
        optimizer,
        t.epochs,
        X_val=X["val"],
        y_val=y["val"],
        seed=t.seed,
        log=None,
        **(_fit_options(config, data) | {"l2_c": C}),
    )
    batches = evaluation_batches(X["val"], y["val"], getattr(model, "eval_rows", EVAL_ROWS))
    return float(test_step(model, batches, loss_fn))


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
    if isinstance(t.l2_c, float):
        extras.append(f"L2 penalty on the weights, C {t.l2_c:g}")
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
