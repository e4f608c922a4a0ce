"""The run folder: its file names, where it is, the summary written at the end, and the one
reader every consumer of a finished run uses.

Nothing here imports torch: the report, `compare` and the command line read run folders
without it.

>>> run = read_run_folder("runs/line")  # doctest: +SKIP
>>> run.summary["metrics"]["test"]["mae"]  # doctest: +SKIP
0.0123
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, cast

from torchwork.config import parse_toml
from torchwork.errors import RunFolderError
from torchwork.fileio import write_text_atomic

# --- The names ----------------------------------------------------------------------------

CONFIG = "config.toml"
METRICS = "metrics.csv"
SUMMARY = "summary.json"
MODEL_SAFETENSORS = "model.safetensors"
MODEL_PTH = "model.pth"
MODEL_FILES = (MODEL_SAFETENSORS, MODEL_PTH)  # the same model, in both formats
PREDICTIONS = "predictions.csv"
CHECKPOINT_LAST = "checkpoint-last.pt"
CHECKPOINT_BEST = "checkpoint-best.pt"
REPORT = "report.html"
MODEL_CARD = "MODEL_CARD.md"
PLOTS = "plots"
TENSORBOARD = "tensorboard"

# Every name a run writes; `--force` clears exactly these, nothing else in the folder.
RUN_FILES = (
    CONFIG,
    METRICS,
    SUMMARY,
    MODEL_SAFETENSORS,
    MODEL_PTH,
    PREDICTIONS,
    CHECKPOINT_LAST,
    CHECKPOINT_BEST,
    REPORT,
    MODEL_CARD,
)
RUN_FOLDERS = (PLOTS, TENSORBOARD)
# The files `torchwork inspect` can read, in the order it suggests them for a run folder.
INSPECTABLE = (MODEL_SAFETENSORS, MODEL_PTH, CHECKPOINT_LAST)


# --- summary.json -------------------------------------------------------------------------

# Per split ("train", "val", "test"), metric name -> value; null (None) where a metric is
# not defined, for example R^2 of a constant target.
SplitMetrics = dict[str, dict[str, float | None]]


class Reference(TypedDict, total=False):
    """The yardstick: closed-form least squares (regression) or the majority class."""

    skipped: str  # why there is none; then no other key
    method: str
    weight: list[float]  # regression: the closed-form line's weights and bias
    bias: list[float]
    label: Any  # classification: the class always predicted
    metrics: SplitMetrics


class Training(TypedDict, total=False):
    """The training settings as run, every auto already chosen."""

    optimizer: str
    lr: float
    batch_size: int  # 0: full batch
    epochs: int
    tol: float
    tol_epochs: int
    chosen: dict[str, str]  # setting -> why auto chose its value
    resumed: list[dict[str, int]]  # each --resume: epochs_done, epochs_before, epochs


class Columns(TypedDict, total=False):
    """One block of a model's inputs: a kind of data and its columns, in words."""

    kind: str  # number, category, image, ... (registry.KINDS)
    columns: list[str]
    about: str  # what the block is: "2 number column(s) (standardized ...): a, b"
    untested: str  # what the model was not tested on, for these columns (the model card)


class TableData(TypedDict, total=False):
    """The table a run trained on (absent for the built-in straight line), or the folder of
    class folders that stands for one (`folder`: what its files are, "images")."""

    path: str
    sha256: str  # of the file as read; a folder's: of its files' names, labels, contents
    table_rows: int  # the rows of predictions.csv: one per file of a folder
    target: str  # a folder's: "label"
    features: list[str]  # a folder's: ["file"]
    inputs: list[str]  # the model's first layer's inputs in order, one per category
    columns: list[Columns]  # each block of the inputs
    folder: str  # a folder of class folders: what its files are ("images")
    dropped: dict[str, Any]  # --dropna: {"rows", "of", "columns": {column: cells}, "warned"}
    missing: dict[str, int]  # the empty cells kept (each as its kind takes it), by column


class ImageData(TypedDict, total=False):
    """The folder of images a run trained on, as runs wrote it before the kinds of data
    (now a TableData with `folder`); read for older run folders."""

    path: str
    sha256: str
    table_rows: int
    target: str
    images: int
    image_size: int
    channels: int


class CrossValidation(TypedDict):
    """--folds K and --repeats N: the fits made before the final model, and their spread."""

    folds: int  # 0: no folds, `repeats` fits of the run's own split
    repeats: int
    rows: int  # the rows the fits were trained and validated on (train + val with folds)
    fits: list[dict[str, Any]]  # each: seed, repeat, fold, epochs_run, metrics {val, test}
    mean: SplitMetrics  # "val" (each fit's own validation rows) and "test": metric -> mean
    std: SplitMetrics  # the sample standard deviation (n - 1) over the fits
    seconds: float
    final_model: str  # what the saved model is: not one of the fits


class Summary(TypedDict, total=False):
    """summary.json as `workflow.finish.summary_of` writes it.

    Every key is optional to a reader: a folder written by an older version may lack some,
    and `true`, `labels`, `confusion_matrix` and `data` are written only when they apply.
    `metrics` is the one key `read_run_folder` checks.
    """

    task: str  # "regression", "binary" or "multiclass"
    loss: str  # the loss class, for example "MSELoss"
    metrics: SplitMetrics
    reference: Reference
    learned: dict[str, list[float]]  # state_dict name -> its values, flattened; {} when large
    rows: dict[str, int]  # split -> rows
    epochs_run: int
    stopped_early: bool
    converged: bool
    best_epoch: int | None
    training: Training
    seconds: float
    device: str
    seed: int
    versions: dict[str, str]  # "torchwork", "torch"
    true: dict[str, float]  # the straight line: the "weight" and "bias" the data was made with
    labels: list[Any]  # classification: the classes in output order
    confusion_matrix: dict[str, list[list[int]]]  # classification: split -> [actual][predicted]
    data: TableData | ImageData
    cross_validation: CrossValidation  # --folds, --repeats: the fits before the final model
    importance: dict[str, Any]  # tables: permutation importance on the test split, by column
    coefficients: dict[str, Any]  # linear: "learned" (and "closed_form") in the columns' units
    interval: dict[str, Any]  # --interval: level, half_width, fitted_on, val_rows, test_coverage
    calibration: dict[str, Any]  # --calibrate: temperature, splits' ECE and Brier, reliability
    class_weights: dict[str, float]  # --class-weight: each class's weight in the loss
    threshold: dict[str, Any]  # --threshold: value, chosen_by (metric, val_metric for auto)
    # by column: what pushes the outputs, measured on test rows (a text column: its words and
    # bigrams per class, "measure", "classes" {label: [[n-gram, push], ...]} or raise/lower)
    explained: dict[str, Any]
    mistakes: list[dict[str, Any]]  # a classifier's mistakes: columns (as read), true, predicted
    command: str  # the command line that started the run, as typed (when it was one)
    reproducibility: dict[str, Any]  # torch's settings that decide bit-identical results; processes


# --- Writing ------------------------------------------------------------------------------


def resolve_run_dir(out: str, force: bool) -> Path:
    """Choose the run folder and check it may be written, without creating anything.

    An empty `out` means a new timestamped folder under runs/. An existing non-empty folder
    is refused unless `force`.
    """
    if not out:
        base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        return path
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"--out {path} is a file, not a folder: choose another --out")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise RunFolderError(
            f"run folder {path} already exists and is not empty: choose another --out, "
            "or add --force to overwrite it"
        )
    return path


def create_run_dir(path: Path) -> Path:
    """Create the run folder (and plots/), clearing earlier torchwork results in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            (path / name).unlink(missing_ok=True)
        for name in RUN_FOLDERS:
            if (path / name).is_dir():
                shutil.rmtree(path / name)
    except OSError as e:
        raise RunFolderError(f"cannot create run folder {path}: {e.strerror or e}") from None
    return path


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_text_atomic(path, json.dumps(_finite(data), indent=2) + "\n")


def _finite(value: Any) -> Any:
    # JSON has no NaN or infinity; null says "not defined" (for example R^2 of a constant).
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# --- Reading ------------------------------------------------------------------------------


@dataclass
class RunFolder:
    """What a finished run wrote, read back as plain values."""

    path: Path
    config: dict[str, Any]  # config.toml, nested as in the file
    config_text: str
    summary: Summary  # summary.json
    history: list[dict[str, float]]  # metrics.csv rows, empty cells left out

    @property
    def name(self) -> str:
        return self.path.resolve().name or str(self.path)


def read_run_folder(folder: str | Path) -> RunFolder:
    """Read config.toml, summary.json and metrics.csv of a run folder, or say what is wrong."""
    path = Path(folder)
    if not path.is_dir():
        raise RunFolderError(
            f"run folder {path} does not exist: give a folder written by torchwork run"
        )
    for name in (SUMMARY, CONFIG):
        if not (path / name).is_file():
            raise RunFolderError(
                f"{path} is not a finished run folder (it has no {name}): give a folder "
                "written by torchwork run, or resume that run to finish it"
            )
    summary_text = _read_text(path / SUMMARY)
    try:
        summary = json.loads(summary_text)
    except json.JSONDecodeError as e:
        raise RunFolderError(
            f"{path / SUMMARY} is not valid JSON ({e.msg}, line {e.lineno}): "
            "run the training again to rewrite it"
        ) from None
    if not isinstance(summary, dict) or not isinstance(summary.get("metrics"), dict):
        raise RunFolderError(
            f"{path / SUMMARY} is not a torchwork summary (it has no metrics): "
            "give a folder written by torchwork run"
        )
    config_text = _read_text(path / CONFIG)
    config = parse_toml(config_text, str(path / CONFIG))
    history = _read_history(path / METRICS) if (path / METRICS).exists() else []
    return RunFolder(path, config, config_text, cast(Summary, summary), history)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise RunFolderError(
            f"cannot read {path} ({reason}): check the file, or run the training again"
        ) from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise RunFolderError(
            f"cannot read {path} ({e.strerror or e}): check the file, or draw the plots again"
        ) from None


def _read_history(path: Path) -> list[dict[str, float]]:
    rows = []
    for n, row in enumerate(csv.DictReader(io.StringIO(_read_text(path))), start=2):
        record = {}
        for key, value in row.items():
            if key is None or value in ("", None):
                continue
            try:
                record[key] = float(value)
            except ValueError:
                raise RunFolderError(
                    f"{path} line {n} has '{value}' in column {key}, not a number: "
                    "run the training again to rewrite it"
                ) from None
        rows.append(record)
    return rows
