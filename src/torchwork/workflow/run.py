"""The run as a whole: `torchwork run` calls `run(config)`, and `torchwork run --resume` calls
`resume(folder)`; `setup` does steps 1 and 2."""

from __future__ import annotations

import contextlib
import copy
import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from torchwork import __version__, distributed
from torchwork.calibration import check_calibrate
from torchwork.checkpoint import load_checkpoint, rng_states, set_rng_states
from torchwork.config import SPLITS, RunConfig, choose_training
from torchwork.data import prepare_data
from torchwork.decision import check_threshold, class_weights, weighted
from torchwork.distributed import Group
from torchwork.engine import TrainState
from torchwork.errors import (
    RunFolderError,
    TorchworkError,
)
from torchwork.fileio import file_sha256, in_background
from torchwork.intervals import check_interval
from torchwork.optim import make_loss, optimizer_for
from torchwork.predict import outputs_of
from torchwork.report.notebook import RunFolderPath
from torchwork.runfolder import (
    CHECKPOINT_LAST,
    PLOTS,
    create_run_dir,
    resolve_run_dir,
)
from torchwork.settings import config_from
from torchwork.workflow.checkpoints import check_resume_fields, restore, tensorboard_writer
from torchwork.workflow.crossval import cross_validate
from torchwork.workflow.finish import describe_parameters, finish, inputs_sha256
from torchwork.workflow.session import (
    Session,
    fresh_model,
    model_title,
    resolve_device,
    resolve_threads,
    threads_kept,
)
from torchwork.workflow.train import choose_l2_c, train


def setup(
    config: RunConfig, out: Path, log: Callable[[str], None] = print, group: Group | None = None
) -> Session:
    """Steps 1 and 2: read or make the data, split it, build the model, loss and optimizer.

    The session's config is a copy of `config` with every `auto` training setting chosen.
    """
    config = copy.deepcopy(config)
    d, t = config.data, config.train
    device = resolve_device(t.device)
    if group is not None:
        device = distributed.device_for(group, device)
    processes = f" | {group.world} processes" if group is not None else ""
    # Recorded as chosen, so that the run's config (and --resume) repeats its bits
    t.threads, fewer = resolve_threads(t.threads, group)
    threads = f" | {t.threads} thread{'s' if t.threads > 1 else ''}" if device.type == "cpu" else ""
    log(
        f"torchwork {__version__} | torch {torch.__version__} | device {device}{processes} | "
        f"seed {t.seed}{threads}"
    )
    if fewer:
        log(f"   Threads: {fewer} (--threads N to change)")

    # 1. Data
    notes: list[str] = []  # what reading and encoding found, said after what the data is
    data = prepare_data(config, notes.append)
    sizes = {name: len(rows) for name, rows in data.rows.items()}
    shown = " / ".join(f"{n} {name}" for name, n in sizes.items() if n or name != "val")
    log(f"1. Data: {data.description}")
    for note in notes:
        log(note)
    log(f"   Split: {shown}{' (shuffled)' if d.shuffle else ''}")
    check_calibrate(config.calibrate, data.task, sizes["val"])
    check_threshold(config.threshold, data.task)
    weights = class_weights(t.class_weight, data.task, data.labels, data.y_raw["train"])
    if weights is not None:
        log(
            "   Class weights in the loss: "
            + ", ".join(f"{label} {w:.4g}" for label, w in zip(data.labels, weights, strict=True))
        )
    check_interval(config.interval, data.task, sizes["val"], data.encoder is not None)

    # 2. Model, loss function, optimizer
    loss_fn = weighted(make_loss(t.loss, data.task), weights).to(device)
    chosen = choose_training(config, sizes["train"], data.kinds)
    model = fresh_model(config, data)
    X = {name: data.X[name].to(device) for name in SPLITS}
    y = {name: data.y[name].to(device) for name in SPLITS}
    fits = t.l2_c == "auto" and sizes["val"] > 0
    chosen |= choose_l2_c(config, data, model, loss_fn, X, y, group, log)
    if fits:  # its fits drew from the global generator: as a run without them
        model = fresh_model(config, data)
    log(
        f"2. Model: {model_title(model)}; loss {type(loss_fn).__name__}; optimizer {t.optimizer} (lr {t.lr:g})"
    )
    if chosen:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in chosen)
        log(
            "   Chosen for this data: "
            + "; ".join(f"{name} {getattr(t, name)} ({why})" for name, why in chosen.items())
            + f" ({flags} to change)"
        )
    log(f"   Initial parameters: {describe_parameters(model)}")
    model.to(device)
    # Before any DDP wrapper: the optimizer decides whether a bag's gradients are sparse
    nccl = group is not None and device.type == "cuda"
    optimizer = optimizer_for(t.optimizer, model, lr=t.lr, momentum=t.momentum, dense=nccl)
    train_model = model
    if group is not None:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        train_model = DistributedDataParallel(model, device_ids=ids)
    return Session(
        config,
        data,
        device,
        model,
        train_model,
        loss_fn,
        optimizer,
        X,
        y,
        out,
        # 0.8 s for an 800 MB CSV here: hashed while the run goes on; data that names files
        # (a folder, a column of pictures) by what the run read from them
        in_background(inputs_sha256, data)
        if d.path and data.reads_files
        else in_background(file_sha256, d.path)
        if d.path
        else None,
        group,
        chosen,
    )


def run(
    config: RunConfig | str | Path | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
    live: bool = False,
    **settings: Any,
) -> RunFolderPath:
    """Run the whole workflow and return the run folder (a Path that a notebook shows as
    the run's report).

    The settings are `torchwork run`'s flags by name, with the command line's defaults and
    checks (`settings.config_from`): `--batch-size 32` is `batch_size=32`, `--no-plots`
    is `no_plots=True` (or `plots=False`), `--kind review=text` is `kind=["review=text"]`.
    `config`: a .toml file (as `--config`), or a RunConfig taken as it is; `force`: as
    `--force`, overwrite a non-empty `out` folder. `live`: the loss curves redrawn as
    training goes, in a notebook (elsewhere a progress bar), as `fit(..., live=True)`.

    Started by torchrun (several processes), it trains data-parallel: every process reads
    the data and builds the same model; only the main process prints and writes.

    >>> folder = run(data="iris.csv", target="species", epochs=100)  # doctest: +SKIP
    >>> folder = run(RunConfig(out="runs/demo"))  # doctest: +SKIP
    """
    config = config_from(config, **settings)
    if config.tensorboard:
        tensorboard_writer(None)  # a missing package is a clear error before anything is written
    with process_group(config) as group, threads_kept():
        log = log if group is None or group.main else _silent
        return RunFolderPath(_run(config, force, log, group, live))


def _run(
    config: RunConfig, force: bool, log: Callable[[str], None], group: Group | None, live: bool
) -> Path:
    out = _run_folder(config, force, group)
    if group is not None and distributed.restarted() and (out / CHECKPOINT_LAST).exists():
        log(f"torchrun restarted the processes: resuming {out} from its last checkpoint")
        return _resume(out, {}, log, group, live)
    session = setup(config, out, log, group)
    rng = rng_states()
    session.cross_validation = cross_validate(session, log)  # before anything is written
    set_rng_states(rng)  # the final model trains as it would without --folds
    if group is None or group.main:
        create_run_dir(out)
    outputs_before = outputs_of(session.model, session.X["test"])
    history, seconds = train(session, TrainState(), 0.0, log, live)
    return finish(session, history, seconds, outputs_before, log)


@contextlib.contextmanager
def process_group(config: RunConfig) -> Iterator[Group | None]:
    """Join torchrun's process group for the run when launched by it; else None."""
    if not distributed.launched():
        yield None
        return
    group = distributed.start(resolve_device(config.train.device))
    try:
        yield group
        # Leave together: a process that tears down its group while the main one is still
        # writing the run folder can take the whole run down with it.
        distributed.barrier()
    finally:
        # The DDP wrapper holds gloo work; freed after the interpreter starts shutting down,
        # it can abort the process (pytorch/pytorch#179291). The run's objects are out of
        # scope by now: collect them while the group still exists.
        gc.collect()
        distributed.stop()


def _silent(_: str) -> None:
    pass


def _run_folder(config: RunConfig, force: bool, group: Group | None) -> Path:
    """The run folder, chosen by the main process and shared with the others."""
    if group is None:
        return resolve_run_dir(config.out, force)
    import torch.distributed as dist

    answer: list[Any] = [None, None]
    if group.main:
        try:
            # After a torchrun restart the folder holds the failed attempt: reuse it.
            answer[0] = str(resolve_run_dir(config.out, force or distributed.restarted()))
        except TorchworkError as e:
            answer[1] = str(e)
    dist.broadcast_object_list(answer, src=0)
    if answer[1] is not None:
        raise RunFolderError(answer[1])
    return Path(answer[0])


def resume(
    folder: str | Path,
    overrides: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
    live: bool = False,
) -> RunFolderPath:
    """Continue the run in `folder` from its last checkpoint, with its stored config; return
    the run folder, as `run` does (`live` as there).

    Only settings that cannot change the result may be given (`train.epochs`, to train
    longer, `plots`, `train.checkpoint_every`, `tensorboard`); anything else is refused.
    Under torchrun every process reads the checkpoint and the main one writes.
    """
    if not distributed.launched():
        with threads_kept():
            return RunFolderPath(_resume(Path(folder), overrides, log, None, live))
    stored = RunConfig()
    if (Path(folder) / CHECKPOINT_LAST).exists():
        # The run's own device decides between gloo and NCCL, not this machine's default.
        stored = RunConfig.from_dict(load_checkpoint(Path(folder) / CHECKPOINT_LAST)["config"])
    with process_group(stored) as group:
        log = log if group.main else _silent
        return RunFolderPath(_resume(Path(folder), overrides, log, group, live))


def _resume(
    folder: Path,
    overrides: dict[str, Any] | None,
    log: Callable[[str], None],
    group: Group | None,
    live: bool = False,
) -> Path:
    if not folder.is_dir():
        raise RunFolderError(f"--resume {folder}: no such run folder")
    path = folder / CHECKPOINT_LAST
    if not path.exists():
        raise RunFolderError(
            f"--resume {folder}: it has no {CHECKPOINT_LAST} (the run stopped before its first "
            "checkpoint): start it again with --force"
        )
    contents = load_checkpoint(path)
    config = RunConfig.from_dict(contents["config"], str(path))  # every auto already chosen
    check_resume_fields({name: name for name in overrides or {}})
    for name, value in (overrides or {}).items():
        config.set(name, value)
    config.out = str(folder)
    config.validate(stored=True)  # a run that an earlier version started may go on
    done = contents["epoch"]
    planned = RunConfig.from_dict(contents["config"]).train.epochs
    if config.train.schedule != "none" and config.train.epochs != planned:
        log(
            f"Note: the {config.train.schedule} learning-rate schedule now runs over "
            f"{config.train.epochs} epochs instead of {planned}: the next epochs' learning "
            "rates differ from those the first run would have used"
        )
    if config.train.epochs < done:
        raise RunFolderError(
            f"--epochs {config.train.epochs} is less than the {done} epochs already trained: give --epochs {done} or more"
        )
    session = setup(config, folder, log, group)
    if session.data_sha256 != contents.get("data_sha256"):
        raise RunFolderError(
            f"the data file {config.data.path} changed since the run started: resuming would not "
            "give the same result; start a new run"
        )
    initial = fresh_model(config, session.data)
    outputs_before = outputs_of(initial.to(session.device), session.X["test"])
    state = restore(session, contents)
    session.chosen = dict(contents.get("chosen") or {})
    session.cross_validation = contents.get("cross_validation")
    session.resumed = [
        *(contents.get("resumed") or []),
        {"epochs_done": done, "epochs_before": planned, "epochs": config.train.epochs},
    ]
    if session.main:
        for stale in [*folder.glob(".*.tmp"), *folder.glob(f"{PLOTS}/.*.tmp")]:
            stale.unlink(missing_ok=True)  # left by a process killed mid-write
    log(f"Resuming {folder} after epoch {done - 1} of {config.train.epochs}")
    history, seconds = train(session, state, float(contents.get("seconds", 0.0)), log, live)
    return finish(session, history, seconds, outputs_before, log)
