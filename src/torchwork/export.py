"""Export a saved model to ONNX or torch.export's .pt2, each verified against PyTorch on the spot.

The exported graph takes one input per block of the model's columns (kinds: each block's
`export_input`) and holds the model and every step of the stored preprocessing that is plain
arithmetic: the numbers' standardization, the regression target's scaling back, class
probabilities, a picture layer's normalisation. What is not arithmetic (a category's code,
the tokenizer, decoding and resizing pictures, naming the classes) is written to a JSON file
beside the export, so another program can prepare its rows, texts or pictures the same way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from torchwork import registry
from torchwork.errors import ConfigError, ModelFileError, TorchworkError
from torchwork.fileio import atomic_path, write_text_atomic

if TYPE_CHECKING:
    from torchwork.kinds.encoder import Encoder

FORMATS = ("onnx", "pt2")
TOLERANCE = 1e-5  # largest difference allowed between the export and PyTorch, per unit of output
MAX_CHECK_ROWS = 1000  # enough rows to catch a wrong graph; more only makes export slower
MAX_CHECK_IMAGES = 100  # pictures, spread over the training folder: every class, a few seconds
RANDOM_CHECK_ROWS = 64
INPUT_NAME = "X"
SIDECAR_SUFFIX = ".preprocess.json"
SIDECAR_FORMAT = "torchwork-export-preprocess"
SIDECAR_VERSION = 2  # 2: one graph input per block of columns (kinds)
ONNX_HINT = "pip install 'torchwork[onnx]'"


@dataclass
class ExportResult:
    """What `export_model` wrote and how closely the export matched PyTorch."""

    path: Path
    fmt: str  # onnx or pt2
    max_abs_diff: float  # largest difference between the export's and PyTorch's outputs
    rows_checked: int
    checked_on: str  # "test rows" of the data, "images of its training folder", "random rows"
    tolerance: float
    input_names: list[str]  # the graph's inputs in order (a bare model's: its input columns)
    output_name: str  # prediction (regression) or probabilities (classification)
    sidecar: Path | None = None  # the JSON preprocessing file, for a model with an encoder
    notes: list[str] = field(default_factory=list)


class ExportPipeline(nn.Module):
    """The model with its stored scaling and output transform, as one graph.

    Inputs: a table model takes one tensor per block of its columns, as each block's
    `export_input` describes (numbers in their own units, which the graph standardizes;
    category codes; ...); a model of the line or a bare .pth, its inputs as they are; an
    image model, uint8 pixels [N, channels, size, size], which it normalises itself.
    Output: predictions in the target's own units [rows, 1] (regression), or class
    probabilities [rows, classes] (binary: [1 - p, p]).
    """

    def __init__(self, model: nn.Module, encoder: Encoder | None = None) -> None:
        super().__init__()
        self.model = model
        blocks = getattr(encoder, "blocks", None)
        self.inputs = [block.export_input() for block in blocks] if blocks else []
        taken: set[str] = set()
        for spec in self.inputs:  # two columns whose names read alike: _2, _3, ...
            name, k = spec["name"], 1
            while spec["name"] in taken:
                k += 1
                spec["name"] = f"{name}_{k}"
            taken.add(spec["name"])
        # What the graph does to each input before the model (numbers: standardized)
        self.prepare = nn.ModuleList(
            [block.graph_layer() or nn.Identity() for block in blocks] if blocks else []
        )
        self.task = encoder.task if encoder is not None else "regression"  # bare: the line
        table = encoder if blocks else None
        self.scale_target = table is not None and table.scale_target
        self.target_mean = float(table.target_mean) if table is not None else 0.0
        self.target_std = float(table.target_std) if table is not None else 1.0
        self.temperature = float(getattr(encoder, "temperature", 1.0))  # --calibrate

    def forward(self, *X: torch.Tensor) -> torch.Tensor:
        # The same float32 operations, in the same order, as the encoder's transform and
        # decode, so the export reproduces `torchwork predict` and not an approximation.
        if self.inputs:
            from torchwork.kinds.base import Inputs

            outputs = self.model(Inputs(step(x) for step, x in zip(self.prepare, X, strict=True)))
        else:
            outputs = self.model(X[0])
        if self.temperature != 1.0:
            outputs = outputs / self.temperature
        if self.task == "binary":
            p = torch.sigmoid(outputs)
            return torch.cat([1 - p, p], dim=1)
        if self.task == "multiclass":
            return torch.softmax(outputs, dim=1)
        if self.scale_target:
            outputs = outputs * self.target_std + self.target_mean
        return outputs

    @property
    def input_names(self) -> list[str]:
        if self.inputs:
            return [spec["name"] for spec in self.inputs]
        return [INPUT_NAME]

    @property
    def output_name(self) -> str:
        return "prediction" if self.task == "regression" else "probabilities"

    def example(self) -> tuple[torch.Tensor, ...]:
        """Inputs to trace the graph with: two rows (or pictures), as a batch of one would
        let torch.export specialize the batch size to 1."""
        if self.inputs:
            return tuple(
                torch.ones(
                    2,
                    *(s if isinstance(s, int) else 3 for s in spec["shape"][1:]),
                    dtype=getattr(torch, spec["dtype"]),
                )
                for spec in self.inputs
            )
        return (torch.zeros(2, int(self.model.spec()["in_features"])),)


def export_model(
    model_path: str | Path,
    fmt: str,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
    force: bool = False,
) -> ExportResult:
    """Export a saved model (with its preprocessing) to ONNX or .pt2 and check it against PyTorch.

    The export is run on the model's test rows (rebuilt from its stored config when the data
    is still there, else on random rows; an image model on pictures of its training folder,
    else on random pixels) and must match PyTorch's outputs to within 1e-5 (relative beyond
    outputs of size 1), or nothing is written. For table models a JSON file
    `OUT.preprocess.json` beside the export lists the input columns in order, the categories
    of each text column (to one-hot encode before calling the graph) and the class labels;
    for image models, how to decode and resize a picture into the graph's uint8 input
    [N, channels, size, size] and the class labels.

    >>> export_model("runs/demo/model.safetensors", "onnx").path  # doctest: +SKIP
    PosixPath('runs/demo/model.onnx')
    """
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}': use {' or '.join(FORMATS)}")
    model_path = Path(model_path)
    out = _output_path(model_path, fmt, out, force)
    if fmt == "onnx":
        _require_onnx()

    from torchwork.predict import Predictor

    predictor = Predictor.from_file(model_path)
    encoder = predictor.encoder
    pipeline = ExportPipeline(predictor.model, encoder).eval()
    in_features = int(predictor.model.spec()["in_features"])
    X_check, checked_on, why_random = check_rows(model_path, encoder, in_features)
    with torch.inference_mode():
        expected = pipeline(*X_check)
    tolerance = TOLERANCE * max(1.0, float(expected.abs().max())) if len(expected) else TOLERANCE

    with atomic_path(out) as tmp:
        if fmt == "onnx":
            actual = _export_onnx(pipeline, pipeline.example(), tmp, X_check)
        else:
            actual = _export_pt2(pipeline, pipeline.example(), tmp, X_check)
        # Checked before the file takes its name, so a wrong export never replaces a good one.
        diff = float((actual - expected).abs().max()) if len(expected) else 0.0
        if not diff <= tolerance:
            raise ModelFileError(
                f"the {fmt} export of {model_path} differs from PyTorch by {diff:.3g} on "
                f"{len(X_check[0])} {checked_on} (allowed {tolerance:.0e}); nothing was written: "
                "report this with the model file"
            )

    notes: list[str] = []
    sidecar = None
    input_names = predictor.feature_names if encoder is None else pipeline.input_names
    if encoder is not None:
        sidecar = Path(f"{out}{SIDECAR_SUFFIX}")
        notes = _outside_graph_notes(encoder, out.name, pipeline)
        contents = sidecar_contents(encoder, out.name, pipeline, notes)
        write_text_atomic(sidecar, json.dumps(contents, indent=2))
    if encoder is None and model_path.suffix.lower() != ".safetensors":
        notes.append(
            f"{model_path.name} keeps no preprocessing: {out.name} takes inputs as the model saw "
            "them; export the .safetensors file to include a table's scaling."
        )
    if why_random:
        notes.insert(0, f"Checked on {checked_on}: {why_random}.")
    allowed = (
        f"{tolerance:.0e}"
        if tolerance == TOLERANCE
        else f"{tolerance:.1e} = {TOLERANCE:.0e} x the largest output"
    )
    log(
        f"Exported {out}; checked on {len(X_check[0])} {checked_on}: max difference {diff:.2g} "
        f"(within {allowed})"
    )
    for note in notes:
        log(f"   {note}")
    if sidecar is not None:
        log(f"   Wrote {sidecar}: how each input is made from the columns, and the labels")
    return ExportResult(
        out,
        fmt,
        diff,
        len(X_check[0]),
        checked_on,
        tolerance,
        input_names,
        pipeline.output_name,
        sidecar,
        notes,
    )


def _output_path(model_path: Path, fmt: str, out: str | Path | None, force: bool) -> Path:
    from torchwork.predict import check_out_name, refuse_overwrite

    path = model_path.with_suffix(f".{fmt}") if out is None else check_out_name(out)
    if path.suffix.lower() != f".{fmt}":
        raise ConfigError(f"--out {path}: name the {fmt} file with a .{fmt} suffix")
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder: give a file name ending in .{fmt}")
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {path}: folder {path.parent} does not exist")
    refuse_overwrite(path, force, "--out " if out is not None else "an earlier export, ")
    return path


def _require_onnx() -> None:
    # onnxscript is what torch.onnx's exporter translates with; onnxruntime runs the check.
    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            raise ConfigError(
                f"exporting to ONNX needs the {module} package, which is not installed: {ONNX_HINT}"
            ) from None


def check_rows(
    model_path: Path, encoder: Encoder | None, in_features: int
) -> tuple[list[torch.Tensor], str, str | None]:
    """Rows to compare the export with PyTorch on, as the export's inputs (one tensor per
    input): the model's test rows when its config and data can be found, else made-up rows
    (around the stored means, of the stored categories, ...). Returns (inputs, which rows:
    "test rows" or "random rows", why random or None)."""
    rows, split_or_why = _test_rows(model_path, encoder, in_features)
    if rows is not None:
        named = split_or_why if " " in split_or_why else f"{split_or_why} rows"
        return [x.contiguous() for x in rows], named, None
    why = split_or_why
    generator = torch.Generator().manual_seed(0)
    if encoder is None:
        X = torch.randn(RANDOM_CHECK_ROWS, in_features, generator=generator)
        return [X], "random rows", why
    made_up = [block.example(RANDOM_CHECK_ROWS, generator) for block in encoder.blocks]
    return made_up, "random rows", why


def _stored_run_config(model_path: Path) -> tuple[Any, str]:
    """The run config stored in a model file, to rebuild its data from; or (None, why not)."""
    if model_path.suffix.lower() != ".safetensors":
        return None, f"{model_path.name} keeps no config to rebuild the training data from"
    from torchwork.checkpoint import read_metadata
    from torchwork.config import stored_config

    config = read_metadata(model_path)["config"]
    if not config:
        return None, f"{model_path.name} keeps no config to rebuild the training data from"
    # Held to run's limits (read_metadata already refused a file that breaks them): the
    # data is rebuilt from it.
    return stored_config(config, str(model_path)), ""


def _test_rows(
    model_path: Path, encoder: Encoder | None, in_features: int
) -> tuple[list[torch.Tensor] | None, str]:
    from torchwork.data import prepare_data
    from torchwork.errors import one_line
    from torchwork.kinds.base import Source
    from torchwork.tables import arrow

    run_config, why = _stored_run_config(model_path)
    if run_config is None:
        return None, why
    try:
        source = run_config.data.path
        if source and _is_dir(source) and encoder is not None:
            return _folder_rows(source, encoder)
        if source and not _is_file(source):
            return None, f"its training data {_shown(source)} is not here"
        data = prepare_data(run_config, log=lambda *_: None, keep_table=True)
        split = next((s for s in ("test", "val", "train") if len(data.rows[s])), None)
        if split is None:
            return None, "its training data has no rows"
        rows = data.rows[split][:MAX_CHECK_ROWS]
        # Tables: the raw rows, encoded by the model's own stored encoder, not the one
        # prepare_data refitted: the data file may have changed since training.
        if encoder is None:
            X = [data.X[split][:MAX_CHECK_ROWS]]
        else:
            where = Source(source, Path(source).parent)
            X = encoder.raw_inputs(data.table.take(arrow.from_numpy(rows.numpy())), where)
    except TorchworkError as e:
        return None, f"its training data cannot be used ({one_line(e)})"
    if encoder is None and (X[0].ndim != 2 or X[0].shape[1] != in_features):
        return None, "its training data no longer fits the model"
    return X, split


def _folder_rows(source: str, encoder: Encoder) -> tuple[list[torch.Tensor] | None, str]:
    """Up to MAX_CHECK_IMAGES files of a model's training folder, spread over every class,
    read as `torchwork predict` reads them (unusable ones left out), in the export's inputs:
    decoding a few files checks the graph as well as decoding the folder would."""
    from torchwork.config import folder_kind
    from torchwork.kinds.base import Source
    from torchwork.tables.folder import find_files

    entry = registry.KINDS[folder_kind(source)]
    folder = find_files(source, entry.suffixes, entry.noun)
    table = folder.table()
    n = min(table.num_rows, MAX_CHECK_IMAGES)
    spread = [i * table.num_rows // n for i in range(n)]
    rows = table.take(spread).rename_columns([encoder.features[0], *table.column_names[1:]])
    X = encoder.raw_inputs(rows, Source(source, folder.root, skip_bad=True))
    if not len(X[0]):
        return None, f"no file of its training folder {_shown(source)} can be read"
    return X, f"{entry.noun} of its training folder"


def _is_file(path: str) -> bool:
    try:
        return Path(path).is_file()
    except OSError:  # a name too long for this system, from a file's stored config
        return False


def _is_dir(path: str) -> bool:
    try:
        return Path(path).is_dir()
    except OSError:
        return False


def _shown(source: str) -> str:
    """A data path from a file's stored config, fit for a one-line message."""
    from torchwork.errors import few

    return source if len(source) <= 200 and source.isprintable() else few([source])


def sidecar_contents(
    encoder: Encoder, export_name: str, pipeline: ExportPipeline, notes: list[str]
) -> dict[str, Any]:
    """The preprocessing the graph cannot hold, as plain JSON: each graph input, and how it
    is made from the table's columns (`inputs`); the output and the labels (with --interval,
    the split-conformal bounds: `interval` [level, half-width], lower and upper = output ∓
    half-width; with --threshold, the binary decision threshold)."""
    decision = {"interval": encoder.interval} if encoder.interval else {}
    if encoder.threshold != 0.5:  # --threshold: the graph gives probabilities, not classes
        decision["threshold"] = encoder.threshold
    return decision | {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "export": export_name,
        "task": encoder.task,
        "target": encoder.target,
        "inputs": pipeline.inputs,
        "output": pipeline.output_name,
        "labels": encoder.labels,
        "note": " ".join(notes),
    }


def _outside_graph_notes(encoder: Encoder, export_name: str, pipeline: ExportPipeline) -> list[str]:
    inputs = pipeline.inputs
    notes = [
        f"{export_name} takes {len(inputs)} input{'s' if len(inputs) > 1 else ''}, as 'inputs' "
        f"of {export_name}{SIDECAR_SUFFIX} describes: "
        + "; ".join(
            f"'{spec['name']}' {spec['dtype']} [N, {', '.join(map(str, spec['shape'][1:]))}], "
            f"{spec['how']}"
            for spec in inputs
        )
        + "."
    ]
    if encoder.task == "regression":
        notes.append(
            f"It outputs the prediction of '{encoder.target}' in its own units, as [N, 1]."
        )
    else:
        notes.append(
            f"It outputs class probabilities [N, {len(encoder.labels)}]; the class names are "
            "not in the graph: column j is 'labels'[j]."
        )
    return notes


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    # torch.export and torch.onnx log progress and deprecation chatter that says nothing
    # to a user of torchwork; real failures still raise.
    names = ("torch.onnx", "torch.export", "torch._export", "onnx_ir", "onnxscript")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _free_dims(pipeline: ExportPipeline, inputs: int) -> tuple[dict[int, Any], ...]:
    """Every input's dimensions that its shape names (the batch, shared by all; a text's
    ids, its own), free; a bare model's one input, its batch."""
    shapes = [spec["shape"] for spec in pipeline.inputs] or [["batch"]] * inputs
    made: dict[str, Any] = {}
    dims = []
    for k, shape in enumerate(shapes):
        free = {}
        for axis, size in enumerate(shape):
            if isinstance(size, str):
                name = size if size == "batch" else f"{size}_{k}"
                free[axis] = made.setdefault(name, torch.export.Dim(name))
        dims.append(free)
    return tuple(dims)


def _export_onnx(
    pipeline: ExportPipeline, example: tuple[torch.Tensor, ...], path: Path, X_check: list
) -> torch.Tensor:
    import onnxruntime

    with _quiet_exporter():
        program = torch.onnx.export(
            pipeline,
            example,
            dynamo=True,  # the TorchScript exporter is deprecated
            input_names=pipeline.input_names,
            output_names=[pipeline.output_name],
            dynamic_shapes=(_free_dims(pipeline, len(example)),),  # forward(*X): one argument
            verbose=False,
        )
        # One self-contained file: torchwork models are far below ONNX's 2 GB limit.
        program.save(str(path), external_data=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {name: x.numpy() for name, x in zip(pipeline.input_names, X_check, strict=True)}
    (outputs,) = session.run(None, feed)
    return torch.from_numpy(outputs)


def _export_pt2(
    pipeline: ExportPipeline, example: tuple[torch.Tensor, ...], path: Path, X_check: list
) -> torch.Tensor:
    with _quiet_exporter():
        program = torch.export.export(
            pipeline, example, dynamic_shapes=(_free_dims(pipeline, len(example)),)
        )
        torch.export.save(program, path)
        loaded = torch.export.load(path).module()
    with torch.inference_mode():
        return loaded(*X_check)
