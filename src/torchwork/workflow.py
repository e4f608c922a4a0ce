"""Step 6, all together: the six steps in order. `torchwork run` calls `run(config)`, and
`torchwork run --resume` calls `resume(folder)`."""

from __future__ import annotations

import contextlib
import copy
import gc
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchwork import __version__, distributed
from torchwork.checkpoint import (
    load,
    load_checkpoint,
    rng_states,
    save,
    save_checkpoint,
    set_rng_states,
)
from torchwork.config import RunConfig, choose_training
from torchwork.data import SPLITS, Prepared, prepare_data
from torchwork.distributed import Group
from torchwork.engine import History, TrainState, fit
from torchwork.errors import (
    ConfigError,
    ModelFileError,
    RunFolderError,
    TorchworkError,
    TrainingDiverged,
    TrainingError,
    TrainingInterrupted,
)
from torchwork.fileio import in_background, write_text_atomic
from torchwork.metrics import classification_metrics, regression_metrics
from torchwork.models import build_model
from torchwork.optim import make_loss, make_optimizer
from torchwork.predict import Score, outputs_of, prediction_columns, score, write_table
from torchwork.report.text import format_metrics_table
from torchwork.runfolder import (
    CHECKPOINT_BEST,
    CHECKPOINT_LAST,
    CONFIG,
    METRICS,
    MODEL_FILES,
    PLOTS,
    PREDICTIONS,
    REPORT,
    SUMMARY,
    TENSORBOARD,
    create_run_dir,
    resolve_run_dir,
    write_json,
)
from torchwork.solve import least_squares


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


def setup(
    config: RunConfig, out: Path, log: Callable[[str], None] = print, group: Group | None = None
) -> Session:
    """Steps 1 and 2: read or make the data, split it, build the model, loss and optimizer.

    The session's config is a copy of `config` with every `auto` training setting chosen.
    """
    config = copy.deepcopy(config)
    d, m, t = config.data, config.model, config.train
    device = resolve_device(t.device)
    if group is not None:
        device = distributed.device_for(group, device)
    processes = f" | {group.world} processes" if group is not None else ""
    log(
        f"torchwork {__version__} | torch {torch.__version__} | device {device}{processes} | seed {t.seed}"
    )

    # 1. Data
    notes: list[str] = []  # what reading and encoding found, said after what the data is
    data = prepare_data(config, notes.append)
    sizes = {name: len(rows) for name, rows in data.rows.items()}
    shown = " / ".join(f"{n} {name}" for name, n in sizes.items() if n or name != "val")
    log(f"1. Data: {data.description}")
    for note in notes:
        log(note)
    log(f"   Split: {shown}{' (shuffled)' if d.shuffle else ''}")

    # 2. Model, loss function, optimizer
    loss_fn = make_loss(t.loss, data.task)
    chosen = choose_training(config, sizes["train"])
    out_features = data.encoder.out_features if data.encoder is not None else 1
    torch.manual_seed(t.seed)
    model = build_model(
        m.kind,
        in_features=data.in_features,
        out_features=out_features,
        hidden=m.hidden,
        task=data.task,
    )
    log(
        f"2. Model: {type(model).__name__} ({m.kind}); loss {type(loss_fn).__name__}; optimizer {t.optimizer} (lr {t.lr:g})"
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
        make_optimizer(t.optimizer, model.parameters(), lr=t.lr, momentum=t.momentum),
        {name: data.X[name].to(device) for name in SPLITS},
        {name: data.y[name].to(device) for name in SPLITS},
        out,
        # 0.8 s for an 800 MB CSV here: hashed while the run goes on
        in_background(file_sha256, d.path) if d.path else None,
        group,
        chosen,
    )


def run(config: RunConfig, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Run the whole workflow and return the run folder.

    Started by torchrun (several processes), it trains data-parallel: every process reads
    the data and builds the same model; only the main process prints and writes.

    >>> folder = run(RunConfig(out="runs/demo"))  # doctest: +SKIP
    """
    config.validate()
    if config.tensorboard:
        tensorboard_writer(None)  # a missing package is a clear error before anything is written
    with process_group(config) as group:
        return _run(config, force, log if group is None or group.main else _silent, group)


def _run(config: RunConfig, force: bool, log: Callable[[str], None], group: Group | None) -> Path:
    out = _run_folder(config, force, group)
    if group is not None and distributed.restarted() and (out / CHECKPOINT_LAST).exists():
        log(f"torchrun restarted the processes: resuming {out} from its last checkpoint")
        return _resume(out, {}, log, group)
    session = setup(config, out, log, group)
    if group is None or group.main:
        create_run_dir(out)
    outputs_before = outputs_of(session.model, session.X["test"])
    history, seconds = train(session, TrainState(), 0.0, log)
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
    folder: str | Path, overrides: dict[str, Any] | None = None, log: Callable[[str], None] = print
) -> Path:
    """Continue the run in `folder` from its last checkpoint, with its stored config.

    Only settings that cannot change the result may be given (`train.epochs`, to train
    longer, `plots`, `train.checkpoint_every`, `tensorboard`); anything else is refused.
    Under torchrun every process reads the checkpoint and the main one writes.
    """
    if not distributed.launched():
        return _resume(Path(folder), overrides, log, None)
    stored = RunConfig()
    if (Path(folder) / CHECKPOINT_LAST).exists():
        # The run's own device decides between gloo and NCCL, not this machine's default.
        stored = RunConfig.from_dict(load_checkpoint(Path(folder) / CHECKPOINT_LAST)["config"])
    with process_group(stored) as group:
        return _resume(Path(folder), overrides, log if group.main else _silent, group)


def _resume(
    folder: Path, overrides: dict[str, Any] | None, log: Callable[[str], None], group: Group | None
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
    for name, value in (overrides or {}).items():
        if name not in RESUME_FIELDS:
            raise RunFolderError(
                f"{name} cannot change when resuming: it would change the result; only "
                f"{', '.join(RESUME_FIELDS)} may be given"
            )
        config.set(name, value)
    config.out = str(folder)
    config.validate(stored=True)  # a run that an earlier version started may go on
    done = contents["epoch"]
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
    torch.manual_seed(config.train.seed)
    initial = build_model(
        config.model.kind,
        session.data.in_features,
        session.model.spec()["out_features"],
        config.model.hidden,
        task=session.data.task,
    )
    outputs_before = outputs_of(initial.to(session.device), session.X["test"])
    state = restore(session, contents)
    session.chosen = dict(contents.get("chosen") or {})
    if session.main:
        for stale in [*folder.glob(".*.tmp"), *folder.glob(f"{PLOTS}/.*.tmp")]:
            stale.unlink(missing_ok=True)  # left by a process killed mid-write
    log(f"Resuming {folder} after epoch {done - 1} of {config.train.epochs}")
    history, seconds = train(session, state, float(contents.get("seconds", 0.0)), log)
    return finish(session, history, seconds, outputs_before, log)


RESUME_FIELDS = ("train.epochs", "train.checkpoint_every", "plots", "tensorboard")
CHECKPOINT_SECONDS = 30.0  # with --checkpoint-every 0, write a checkpoint this often


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
        logged: int = 0,
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
        self.logged = logged  # history records already sent to TensorBoard (before a resume)
        self.tensorboard = None
        if session.config.tensorboard and session.main:
            self.tensorboard = tensorboard_writer(session.out / TENSORBOARD)

    def __call__(self, state: TrainState) -> None:
        if self.tensorboard is not None and len(state.history.records) > self.logged:
            for record in state.history.records[self.logged :]:
                for key, value in record.items():
                    if key != "epoch":
                        self.tensorboard.add_scalar(
                            f"loss/{key.removesuffix('_loss')}", value, record["epoch"]
                        )
            self.logged = len(state.history.records)
            self.tensorboard.flush()
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
        if state.train_loss is not None and not bool(torch.isfinite(state.train_loss)):
            raise TrainingDiverged(state.epoch - 1, float(state.train_loss))
        if not all(bool(torch.isfinite(p).all()) for p in s.model.parameters()):
            raise TrainingDiverged(
                state.epoch - 1, float("nan"), " (the parameters are no longer finite)"
            )
        if not s.main:
            self.last_write = time.perf_counter()
            return
        history = state.history
        contents = {
            "epoch": state.epoch,
            "model": s.model.state_dict(),
            "optimizer": s.optimizer.state_dict(),
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
            "chosen": s.chosen or {},
            "generator": state.generator.get_state() if state.generator is not None else None,
            "rng": rng_states(),
            "config": checkpoint_config(s.config),
            "data_sha256": s.data_sha256,
            "seconds": self.seconds(),
        }
        save_checkpoint(s.out / CHECKPOINT_LAST, contents)
        if state.best_state is not None and history.best_epoch != self.best_written:
            save_checkpoint(s.out / CHECKPOINT_BEST, contents | {"model": state.best_state})
            self.best_written = history.best_epoch
        write_text_atomic(s.out / METRICS, history.to_csv())
        self.last_write = time.perf_counter()
        self.last_epoch = state.epoch


def checkpoint_config(config: RunConfig) -> dict[str, Any]:
    """The config as a checkpoint keeps it: the data path made absolute, so a resume from
    another folder reads the same file."""
    stored = config.to_dict()
    if config.data.path:
        stored["data"]["path"] = str(Path(config.data.path).resolve())
    return stored


class StopSignals:
    """While training: the first SIGINT or SIGTERM asks for a clean stop after the current
    epoch (with a checkpoint); a second one stops at once. Atomic writes mean no file is
    left half-written either way."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.received: int | None = None
        self.log = log
        self.previous: dict[int, Any] = {}

    def handler(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            raise ImmediateStop(signum)
        self.received = signum
        if distributed.main_process():  # every process gets it; one says so
            print(
                f"\n{signal.Signals(signum).name}: stopping after this epoch with a checkpoint "
                "(press Ctrl-C again to stop at once)",
                file=sys.stderr,
            )

    def __enter__(self) -> StopSignals:
        import threading

        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self.handler)
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        # A process of a distributed run that stopped cleanly only has to say so and end:
        # the signal that torchrun passes on to the others a moment later, if it comes late
        # to this one, must not make it say it stopped at once.
        stopped = kind is not None and issubclass(kind, TrainingInterrupted)
        ignore = stopped and distributed.launched()
        for signum, previous in self.previous.items():
            signal.signal(signum, signal.SIG_IGN if ignore else previous)


class ImmediateStop(KeyboardInterrupt):
    """A second signal during training: stop now (exit code 128 + the signal's number)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def train(
    session: Session, state: TrainState, seconds_before: float, log: Callable[[str], None]
) -> tuple[History, float]:
    """Step 3: fit, with checkpoints; a divergence or a signal still leaves a resumable run."""
    t = session.config.train
    X, y = session.X, session.y
    batch = "full batch" if t.batch_size == 0 else f"batches of {t.batch_size}"
    until = (
        f"up to {t.epochs} epochs ({batch}; converged when the training loss improves by no "
        f"more than {t.tol:g} for {t.tol_epochs} epochs)"
        if t.tol > 0
        else f"{t.epochs} epochs ({batch})"
    )
    log(f"3. Training for {until}")
    with StopSignals(log) as stop:
        checkpointer = Checkpointer(
            session, seconds_before, stop, log, logged=len(state.history.records)
        )
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
                batch_size=t.batch_size,
                patience=t.patience,
                tol=t.tol,
                tol_epochs=t.tol_epochs,
                log_every=t.log_every,
                eval_every=t.eval_every,
                seed=t.seed,
                log=log,
                progress=sys.stderr.isatty(),
                state=state,
                on_epoch_end=checkpointer,
                group=session.group,
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
            if checkpointer.tensorboard is not None:
                checkpointer.tensorboard.close()
    return history, checkpointer.seconds()


def finish(
    session: Session,
    history: History,
    seconds: float,
    outputs_before: torch.Tensor,
    log: Callable[[str], None],
) -> Path:
    """Steps 4 to 6: evaluate, draw, save and check the model files, write the summary."""
    if not session.main:
        return session.out
    config, data, model, out = session.config, session.data, session.model, session.out
    sizes, X = session.sizes, session.X

    # 4. Predictions and evaluation
    used = [name for name in SPLITS if sizes[name]]
    outputs = {name: outputs_of(model, X[name]) for name in used}
    scores = {
        name: score(data.task, data.encoder, outputs[name], data.y_raw[name]) for name in used
    }
    metrics = {name: scores[name].metrics for name in used}
    reference, reference_summary = reference_scores(data, used, config.reference)
    log("4. Predictions and evaluation")
    if "skipped" in reference_summary:
        log(f"   No reference: {reference_summary['skipped']}")
    if data.true is not None:
        log_parameters(model, reference_summary, data.true, log)
    log(
        format_metrics_table(
            metrics, reference or None, "closed-form" if data.task == "regression" else "majority"
        )
    )
    if config.plots:
        draw_plots(
            out / PLOTS, data, history, outputs_before, outputs.get("test"), scores.get("test")
        )

    # 5. Saving and loading
    saved_config = config.to_dict() | {"out": ""}
    preprocess = data.encoder.to_dict() if data.encoder is not None else None
    check_rows = "test" if sizes["test"] else "train"
    for name in MODEL_FILES:
        save(model, out / name, config=saved_config, preprocess=preprocess)
        loaded = load(out / name).to(session.device)
        if not torch.equal(outputs_of(loaded, X[check_rows]), outputs[check_rows]):
            raise RuntimeError(
                f"the model loaded from {out / name} predicts differently from the trained one"
            )
    log(
        f"5. Saved model.safetensors and model.pth; loaded each into a new model: predictions on the "
        f"{sizes[check_rows]} {check_rows} rows identical to the trained model's"
    )

    # 6. The run folder
    write_text_atomic(out / METRICS, history.to_csv())
    write_text_atomic(out / CONFIG, RunConfig.from_dict(saved_config).to_toml())
    written = [CONFIG, METRICS, SUMMARY, *MODEL_FILES, CHECKPOINT_LAST]
    if (out / CHECKPOINT_BEST).exists():
        written.append(CHECKPOINT_BEST)
    if data.encoder is not None:
        write_predictions(out / PREDICTIONS, data, outputs)
        written.append(PREDICTIONS)
    summary: dict[str, Any] = {
        "task": data.task,
        "loss": type(session.loss_fn).__name__,  # what --loss auto chose, too
        "metrics": metrics,
        "reference": reference_summary,
        "learned": {
            k: v.detach().cpu().reshape(-1).tolist() for k, v in model.state_dict().items()
        },
        "rows": {name: sizes[name] for name in used},
        "epochs_run": history.epochs_run,
        "stopped_early": history.stopped_early,
        "converged": history.converged,
        "best_epoch": history.best_epoch,
        "training": {
            name: getattr(config.train, name)
            for name in ("optimizer", "lr", "batch_size", "epochs", "tol", "tol_epochs")
        }
        | {"chosen": session.chosen or {}},
        "seconds": seconds,
        "device": str(session.device),
        "seed": config.train.seed,
        "versions": {"torchwork": __version__, "torch": torch.__version__},
    }
    if data.true is not None:
        summary["true"] = data.true
    if data.task != "regression":
        summary["labels"] = data.labels
        summary["confusion_matrix"] = {name: scores[name].confusion_matrix for name in used}
    if data.encoder is not None:
        summary["data"] = {
            "path": config.data.path,
            "table_rows": data.source_rows,  # the rows of predictions.csv
            "target": data.encoder.target,
            "features": data.encoder.feature_names,
            # the model's input columns in order, one per category: they name the weights
            "inputs": data.encoder.input_names,
        }
    write_json(out / SUMMARY, summary)
    from torchwork.report.html import write_report

    write_report(out)
    written.append(REPORT)
    log(f"6. Run folder: {out} ({', '.join(written)}{f', {PLOTS}/' if config.plots else ''})")
    return out


def tensorboard_writer(folder: Path | None) -> Any:
    """A TensorBoard SummaryWriter for `folder` (None: only check that one can be made)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "--tensorboard needs the tensorboard package: pip install 'torchwork[tensorboard]'"
        ) from None
    return SummaryWriter(str(folder)) if folder is not None else None


def file_sha256(path: str | Path) -> str:
    """The data file's fingerprint, so a resume can tell whether it changed."""
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


REFERENCE_MAX_INPUTS = 2048  # closed-form reference only up to this many model inputs...
REFERENCE_MAX_WORK = 2e11  # ...and rows x inputs² (its time; about 10 s on 2 cores here)


def reference_scores(
    data: Prepared, used: list[str], enabled: bool = True
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """The yardstick: closed-form least squares for regression, the majority class otherwise.

    Skipped when not `enabled` (--no-reference), and the closed form when it would cost
    more than training could (bounded time: rows x inputs²; memory: inputs²).
    """
    if not enabled:
        return {}, {"skipped": "--no-reference"}
    rows, width = data.X["train"].shape
    if data.task == "regression" and (
        width > REFERENCE_MAX_INPUTS or rows * width * width > REFERENCE_MAX_WORK
    ):
        return {}, {
            "skipped": f"closed-form least squares on {rows:,} rows x {width:,} inputs would take "
            f"too long (at most {REFERENCE_MAX_INPUTS:,} inputs and {REFERENCE_MAX_WORK:.0e} "
            "rows x inputs²); fewer inputs (--max-categories, --exclude) bring it back"
        }
    if data.task == "regression":
        exact = least_squares(data.X["train"], data.y_raw["train"])
        metrics = {
            name: regression_metrics(exact.predict(data.X[name]), data.y_raw[name]) for name in used
        }
        return metrics, {
            "method": "closed-form least squares on the training split (normal equations of "
            "the centred columns in float64, torch.linalg.lstsq)",
            "weight": exact.weight.reshape(-1).tolist(),
            "bias": exact.bias.reshape(-1).tolist(),
            "metrics": metrics,
        }
    classes = len(data.labels)
    train = data.y_raw["train"]
    majority = int(torch.bincount(train, minlength=classes).argmax())
    share = float((train == majority).double().mean())
    metrics = {}
    for name in used:
        truth = data.y_raw[name]
        guess = torch.full_like(truth, majority)
        metrics[name] = classification_metrics(
            guess, truth, classes, torch.full((len(truth),), share) if classes == 2 else None
        )
    return metrics, {
        "method": "majority class of the training split",
        "label": data.labels[majority],
        "metrics": metrics,
    }


def log_parameters(
    model: nn.Module, reference: dict[str, Any], true: dict[str, float], log: Callable[[str], None]
) -> None:
    """The learned line next to the exact answer and the truth."""
    line = learned_line(model)
    learned = [f"{v:.4f}" for v in line] if line is not None else ["(mlp)", "(mlp)"]
    log(f"  {'':<8}{'learned':>12}{'closed-form':>14}{'true':>10}")
    for i, name in enumerate(("weight", "bias")):
        exact = f"{reference[name][0]:.4f}" if name in reference else "n/a"
        log(f"  {name:<8}{learned[i]:>12}{exact:>14}{true[name]:>10.4f}")


def draw_plots(
    folder: Path,
    data: Prepared,
    history: Any,
    outputs_before: torch.Tensor,
    outputs_test: torch.Tensor | None,
    test_score: Score | None,
) -> None:
    # matplotlib costs most of a second to import: only runs that draw pay for it.
    from torchwork.plots import (
        plot_confusion_matrix,
        plot_loss_curves,
        plot_predicted_vs_actual,
        plot_predictions,
        plot_residuals,
    )

    folder.mkdir(exist_ok=True)
    plot_loss_curves(
        history.column("epoch"),
        history.column("train_loss"),
        history.column("test_loss"),
        history.column("val_loss"),
        path=folder / "loss_curves.png",
    )
    if outputs_test is None or test_score is None:
        return
    if data.task != "regression":
        plot_confusion_matrix(
            test_score.confusion_matrix, data.labels, path=folder / "confusion_matrix.png"
        )
        return
    predictions = test_score.predictions
    y_test = data.y_raw["test"]
    if data.x_plot is not None:
        before = (
            data.encoder.decode(outputs_before)["prediction"]
            if data.encoder is not None
            else outputs_before
        )
        x_train, y_train = data.x_plot["train"], data.y_raw["train"]
        x_test = data.x_plot["test"]
        plot_predictions(
            x_train,
            y_train,
            x_test,
            y_test,
            before,
            path=folder / "predictions_before.png",
            title="Predictions before training",
        )
        plot_predictions(
            x_train,
            y_train,
            x_test,
            y_test,
            predictions,
            path=folder / "predictions_after.png",
            title="Predictions after training",
        )
    else:
        plot_predicted_vs_actual(y_test, predictions, path=folder / "predicted_vs_actual.png")
        plot_residuals(y_test, predictions, path=folder / "residuals.png")


def write_predictions(path: Path, data: Prepared, outputs: dict[str, torch.Tensor]) -> None:
    """predictions.csv: every row of the table in order, its split, target and prediction
    (empty for rows left out when the split fractions add up to less than 1)."""
    import numpy as np
    import pyarrow as pa

    from torchwork.tables import arrow

    used = [name for name in SPLITS if name in outputs]
    order = torch.cat([data.rows[name] for name in used]).numpy()
    where = np.full(data.source_rows, -1, dtype=np.int64)  # table row -> position in order
    where[order] = np.arange(len(order))
    split = np.full(data.source_rows, len(SPLITS), dtype=np.int8)
    for code, name in enumerate(SPLITS):
        split[data.rows[name].numpy()] = code
    predicted = prediction_columns(data.encoder, torch.cat([outputs[name] for name in used]))
    place = arrow.from_numpy(where, mask=where < 0)
    target = data.encoder.target
    if target == "split" or target in predicted:
        target = f"{target} (actual)"  # keep the target beside our own column of that name
    columns = {
        "split": arrow.labelled(split, [*SPLITS, "unused"]),
        target: data.target,
    }
    columns |= {name: arrow.compute("take", column, place) for name, column in predicted.items()}
    write_table(pa.table(columns), path)


def learned_line(model: nn.Module) -> tuple[float, float] | None:
    """(weight, bias) of a one-feature linear model, else None."""
    state = model.state_dict()
    for w, b in (("weights", "bias"), ("linear_layer.weight", "linear_layer.bias")):
        if set(state) == {w, b} and state[w].numel() == 1:
            return float(state[w]), float(state[b])
    return None


def describe_parameters(model: nn.Module) -> str:
    """Small parameters by value (the course prints its state_dict), large ones by count."""
    state = model.state_dict()
    if all(v.numel() <= 4 for v in state.values()):
        return ", ".join(
            f"{k} " + " ".join(f"{x:.4f}" for x in v.reshape(-1).tolist()) for k, v in state.items()
        )
    total = sum(v.numel() for v in state.values())
    return f"{total} parameters in {len(state)} tensors"
