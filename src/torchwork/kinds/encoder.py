"""The encoder: a table's rows to the model's inputs, one block per kind of column, and the
model's outputs back to predictions in the data's own terms; stored in the model file.

Fitting it recognises each feature column's kind (the kinds in registry.KINDS, the most
specific asked first; `--kind COLUMN=KIND` overrides one), says what it found, and has each
kind fit its columns' block on the training rows. The target is the encoder's own: scaled
for regression, class labels for classification, and the decision rule a run fits after
training (--interval, --calibrate, --threshold).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from torchwork import registry
from torchwork.errors import DataError
from torchwork.kinds.base import Block, Inputs, Kind, Source, TrainingRows, malformed
from torchwork.kinds.legacy import FORMAT as PREPROCESS_FORMAT
from torchwork.kinds.legacy import upgrade_preprocess
from torchwork.metrics import decode_classes
from torchwork.registry import Task
from torchwork.tables import arrow
from torchwork.tables.check import (
    MAX_CLASSES,
    is_numeric,
    is_text,
    list_names,
    plain,
    sorted_labels,
)
from torchwork.tables.convert import table_to_tensor


@dataclass
class FitOptions:
    """What the flags say about encoding the columns (config.DataConfig and the model)."""

    scale: bool = True  # standardize numbers on the training rows
    scale_target: bool = True  # ...and a regression target
    categorical: str = "auto"  # auto: encode text of few values as categories; none: refuse
    max_categories: int = 0  # a column's most frequent categories kept, the rest "other"
    keep_ids: bool = False  # keep a text column with a different value in every row
    kinds: dict[str, str] = field(default_factory=dict)  # column -> kind, over recognition
    model: str = "linear"  # the model kind (a picture layer's architecture: cnn, tinyvgg)
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    image_size: int = 0  # pictures: this many pixels a side; 0: chosen from the data
    channels: int = 3  # pictures: 3 (RGB) or 1 (grey)


def kind_of(name: str) -> Kind:
    """The kind object of a registry.KINDS name."""
    entry = registry.KINDS.get(name)
    if entry is None:
        raise malformed(f"unknown kind of data {name!r:.40}")
    return entry.load()


def recognise(
    table: pa.Table, features: Sequence[str], overrides: dict[str, str], where: Source
) -> dict[str, tuple[str, str]]:
    """Each feature column's kind and why: the last kind in registry.KINDS that claims it
    (the more specific kinds are listed later), or the one `overrides` names."""
    unknown = [name for name in overrides if name not in features]
    if unknown:
        raise DataError(
            f"--kind names column(s) {list_names(unknown, quote=True)}, which are not feature "
            f"columns of {where.name}; they are {list_names(list(features))}"
        )
    found = {}
    kinds = [(name, entry.load()) for name, entry in reversed(registry.KINDS.items())]
    for column in features:
        if column in overrides:
            kind = overrides[column]
            why_not = kind_of(kind).accepts(table.column(column))
            if why_not:
                raise DataError(
                    f"--kind {column}={kind}: column '{column}' of {where.name} {why_not}: "
                    "name another kind, or drop the pair"
                )
            found[column] = (kind, "--kind")
            continue
        values = table.column(column)
        for name, kind in kinds:
            why = kind.recognise(values, column, where)
            if why is not None:
                found[column] = (name, why)
                break
        else:
            raise DataError(
                f"column '{column}' of {where.name} holds {values.type} values, which no kind "
                "of data reads: convert it, or leave it out with --exclude"
            )
    return found


@dataclass
class Encoder:
    """Turns table rows into model inputs (one tensor per block) and model outputs back into
    predictions. Fitted once (`fit`), then stored in the model file (`to_dict`, `from_dict`)
    so that prediction encodes exactly as training did."""

    features: list[str]  # the feature columns the model reads, in the table's order
    blocks: list[Block]
    target: str
    task: Task
    labels: list[Any] = field(default_factory=list)  # class labels, in output order
    target_mean: float = 0.0  # regression target standardization
    target_std: float = 1.0
    # regression with --interval: [level, half-width in the target's units] (intervals.py)
    interval: list[float] = field(default_factory=list)
    temperature: float = 1.0  # classification with --calibrate: logits / temperature
    threshold: float = 0.5  # binary: positive at this probability or more (--threshold)

    @classmethod
    def fit(
        cls,
        table: pa.Table,
        features: Sequence[str],
        target: str,
        task: Task,
        train_rows: np.ndarray,
        where: Source,
        options: FitOptions | None = None,
        kinds: dict[str, tuple[str, str]] | None = None,
        decoded: dict[str, Any] | None = None,
    ) -> Encoder:
        """Fitted on `table`: each kind's block fitted on the training rows; a column that
        cannot be learned from (the same value in every row; an ID) is left out with a line
        saying so. `kinds` and `decoded`: what `recognise` and `decode_columns` found, when
        the caller had to decode the columns before choosing the training rows (files a
        column names are read before the split, so that unusable ones drop their rows)."""
        options = options or FitOptions()
        if kinds is None:
            kinds = recognise(table, features, options.kinds, where)
            say_kinds(kinds, where)
            table, decoded = decode_columns(table, kinds, where, options)
        train = TrainingRows(np.asarray(train_rows), table.num_rows)
        blocks: list[Block] = []
        left_out: list[tuple[str, str]] = []
        for name, entry in registry.KINDS.items():
            columns = [c for c in features if kinds[c][0] == name]
            if columns:
                kind = entry.load()
                blocks += kind.fit(table, columns, train, options, where, left_out, decoded or {})
        lines = [
            f"{len(named)} {why}: {', '.join(named[:5])}"
            + (f" and {len(named) - 5} more" if len(named) > 5 else "")
            for why in dict.fromkeys(why for _, why, _ in left_out)
            for named in [[f"'{n}'" + (f" ({v})" if v else "") for n, w, v in left_out if w == why]]
        ]
        if not blocks:
            raise DataError(
                f"every feature column of {where.name} was left out ({'; '.join(lines)}): "
                "nothing to learn from"
            )
        for line in lines:
            where.say(f"   Left out {line}")
        kept = {c for b in blocks for c in b.columns}
        encoder = cls([c for c in features if c in kept], blocks, target, task)
        column = table.column(target)
        if task == "regression":
            if options.scale_target:
                values = arrow.float_values(column, np.float32)
                encoder.target_mean, encoder.target_std = train.mean_std(values)
        else:
            encoder.labels = sorted_labels([plain(v) for v in arrow.unique(column)])
        return encoder

    # --- Rows to model inputs -------------------------------------------------------------

    @property
    def feature_names(self) -> list[str]:
        return list(self.features)

    def takes_missing(self) -> list[str]:
        """The feature columns whose empty cells the model takes (as training took them)."""
        return [c for b in self.blocks for c in b.columns if b.takes_missing(c)]

    @property
    def input_names(self) -> list[str]:
        """What the model's first layer takes, block by block: the numbers, one name per
        category, a text column's features..."""
        return [name for block in self.blocks for name in block.input_names()]

    @property
    def out_features(self) -> int:
        return len(self.labels) if self.task == "multiclass" else 1

    def model_blocks(self) -> list[dict[str, Any]]:
        """The blocks' layer specs, in order: what the model is built from."""
        return [block.spec() for block in self.blocks]

    def prepare(self, table: pa.Table, where: Source) -> tuple[pa.Table, dict[str, Any]]:
        """Read what the columns name (files) once, as training did: the table less any rows
        a block dropped (`where.skip_bad`), and the decoded values by column."""
        missing = [n for n in self.features if n not in table.column_names]
        if missing:
            raise DataError(
                f"{where.name} lacks the model's feature column(s): {', '.join(missing)}"
            )
        decoded: dict[str, Any] = {}
        for block in self.blocks:
            table, values, kept = block.decode(table, where)
            decoded = _joined(decoded, values, kept)
        return table, decoded

    def transform(
        self,
        table: pa.Table,
        where: Source | str = "the input",
        decoded: dict[str, Any] | None = None,
        order: np.ndarray | None = None,
    ) -> Inputs:
        """The model's inputs for the table's rows (with `order`: row k is table row
        order[k]); `decoded`: what `prepare` gave for this table (read here otherwise)."""
        where = where if isinstance(where, Source) else Source(where)
        if decoded is None:
            table, decoded = self.prepare(table, where)
        return Inputs(block.encode(table, where, decoded, order) for block in self.blocks)

    def examples(
        self, table: pa.Table, decoded: dict[str, Any], rows: np.ndarray
    ) -> dict[str, list[str]]:
        """The rows' columns as a person reads them, where a kind shows them (text)."""
        found: dict[str, list[str]] = {}
        for block in self.blocks:
            found |= block.examples(table, decoded, rows)
        return found

    def raw_inputs(self, table: pa.Table, where: Source) -> list[torch.Tensor]:
        """The table's rows as an exported graph takes them, one tensor per block."""
        table, decoded = self.prepare(table, where)
        return [block.raw(table, where, decoded) for block in self.blocks]

    # --- The target -----------------------------------------------------------------------

    def encode_target(self, table: pa.Table, source: str = "the input") -> torch.Tensor:
        """The target as the loss function wants it: [rows, 1] float (scaled for regression,
        0/1 for binary), or [rows] class indices for multiclass."""
        if self.target not in table.column_names:
            raise DataError(f"{source} has no target column '{self.target}': name it with --target")
        column = table.column(self.target)
        if self.task == "regression":
            if not is_numeric(column.type):
                raise DataError(
                    f"target '{self.target}' of {source} must hold numbers (it holds {column.type})"
                )
            y = table_to_tensor(table, [self.target])
            return (y - self.target_mean) / self.target_std if self.scale_target else y
        index = self.label_index(column, source)
        if self.task == "binary":
            return index.to(torch.float32).unsqueeze(1)
        return index

    @property
    def scale_target(self) -> bool:
        return (self.target_mean, self.target_std) != (0.0, 1.0)

    def label_index(self, column: pa.ChunkedArray, source: str) -> torch.Tensor:
        """Each row's class index; a label the model does not know is an error."""
        found = self._label_positions(column)
        if found is not None and not found.null_count:
            parts = [arrow.to_numpy(chunk) for chunk in found.chunks]
            values = parts[0] if len(parts) == 1 else np.concatenate(parts)
            return torch.from_numpy(values.astype(np.int64))
        position = {_label_key(label): i for i, label in enumerate(self.labels)}
        out = np.empty(len(column), dtype=np.int64)
        for i, value in enumerate(column.to_pylist()):
            key = _label_key(value)
            if key not in position:
                raise DataError(
                    f"target '{self.target}' of {source} has the label {value!r} in row {i + 1}, which the "
                    f"model does not know; its labels are {', '.join(map(str, self.labels))}"
                )
            out[i] = position[key]
        return torch.from_numpy(out)

    def _label_positions(self, column: pa.ChunkedArray) -> pa.ChunkedArray | None:
        """Label positions found by Arrow when the column and the labels are both numbers
        (1, 1.0 and True are one class, as _label_key has it) or both text; else None, and
        the caller compares row by row."""
        numbers = all(isinstance(v, (bool, int, float)) for v in self.labels)
        if numbers and is_numeric(column.type):
            keys = arrow.from_numpy(np.array([float(v) for v in self.labels]))
            return arrow.index_in(arrow.cast(column, pa.float64()), keys)
        if is_text(column.type) and all(isinstance(v, str) for v in self.labels):
            return arrow.index_in(arrow.cast(column, pa.string()), arrow.from_values(self.labels))
        return None

    def target_values(self, table: pa.Table) -> torch.Tensor:
        """The raw regression target as [rows, 1] float32."""
        return table_to_tensor(table, [self.target])

    def decode(self, outputs: torch.Tensor) -> dict[str, Any]:
        """Model outputs to predictions in the data's own terms.

        Regression: {"prediction": float32 tensor [rows]} (with --interval, "lower" and
        "upper"). Classification: the predicted class indices, "index", and the class
        probabilities [rows, classes]; `labels_of` names the classes.
        """
        outputs = outputs.detach().cpu()
        if self.task == "regression":
            values = outputs.reshape(-1)
            if self.scale_target:
                values = values * self.target_std + self.target_mean
            if self.interval:
                width = self.interval[1]
                return {"prediction": values, "lower": values - width, "upper": values + width}
            return {"prediction": values}
        return decode_classes(outputs, self.task, self.temperature, self.threshold)

    def labels_of(self, index: torch.Tensor) -> list[Any]:
        """Class indices as the labels they stand for."""
        return [self.labels[i] for i in index.tolist()]

    # --- To and from a model file ---------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PREPROCESS_FORMAT,
            "features": list(self.features),
            "blocks": [block.to_dict() for block in self.blocks],
            "target": self.target,
            "task": self.task,
            "labels": list(self.labels),
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "interval": list(self.interval),
            "temperature": self.temperature,
            "threshold": self.threshold,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any], spec: dict[str, Any] | None = None) -> Encoder:
        """The encoder stored in a model file (written by this version or an earlier one,
        whose model description `spec` it may need), every field checked: a hand-edited or
        damaged file is an error, never wrong numbers."""
        raw = upgrade_preprocess(raw, spec)
        try:
            blocks_raw = raw["blocks"]
            if not isinstance(blocks_raw, list) or not all(isinstance(b, dict) for b in blocks_raw):
                raise malformed("blocks must be a list of objects")
            blocks = [kind_of(str(b.get("kind"))).from_dict(b) for b in blocks_raw]
            encoder = cls(
                list(raw["features"]),
                blocks,
                raw["target"],
                raw["task"],
                list(raw.get("labels", [])),
                float(raw.get("target_mean", 0.0)),
                float(raw.get("target_std", 1.0)),
                [float(v) for v in raw.get("interval", [])],
                float(raw.get("temperature", 1.0)),
                float(raw.get("threshold", 0.5)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DataError(f"the stored preprocessing is incomplete or malformed: {e}") from None
        labels = raw.get("labels", [])
        if not isinstance(labels, list) or not all(
            isinstance(v, (str, int, float, bool)) for v in labels
        ):
            problem = "labels must be a list of names or numbers"
        else:
            problem = encoder._problem()
        if problem:
            raise malformed(problem)
        return encoder

    def _problem(self) -> str:
        """What is wrong with this encoder's fields, or "" when nothing is."""
        names = self.features
        if not names or not self.blocks:
            return "it has no feature columns"
        if not all(isinstance(n, str) for n in [*names, self.target]):
            return "a column name is not text"
        if len(set(names)) < len(names) or self.target in names:
            return "a column name appears twice"
        in_blocks = [c for b in self.blocks for c in b.columns]
        if sorted(in_blocks) != sorted(names):
            return "the blocks' columns are not the feature columns"
        if self.task not in ("regression", "binary", "multiclass"):
            return f"unknown task {self.task!r}"
        if not (math.isfinite(self.temperature) and self.temperature > 0) or (
            self.temperature != 1.0 and self.task == "regression"
        ):
            return "temperature must be a positive number, of a classifier"
        if not 0 < self.threshold < 1 or (self.threshold != 0.5 and self.task != "binary"):
            return "threshold must be a probability between 0 and 1, of a binary classifier"
        if self.interval and not (
            self.task == "regression"
            and len(self.interval) == 2
            and 0 < self.interval[0] < 1
            and math.isfinite(self.interval[1])
            and self.interval[1] >= 0
        ):
            return "interval must be [level between 0 and 1, half-width >= 0] of a regression"
        if not (math.isfinite(self.target_mean) and math.isfinite(self.target_std)):
            return "the target's mean and std must be finite"
        if not self.target_std > 0:
            return f"the target's std is {self.target_std}, not above 0"
        wanted = {"regression": (0, 0), "binary": (2, 2), "multiclass": (2, MAX_CLASSES)}
        low, high = wanted[self.task]
        if not low <= len(self.labels) <= high:
            return f"a {self.task} model cannot have {len(self.labels)} labels"
        if len({_label_key(v) for v in self.labels}) < len(self.labels):
            return "a label appears twice"
        return ""


def decode_columns(
    table: pa.Table, kinds: dict[str, tuple[str, str]], where: Source, options: FitOptions
) -> tuple[pa.Table, dict[str, Any]]:
    """Each kind reads what its columns name (files), once, before the split: the table
    less the rows dropped, and the decoded values by column."""
    decoded: dict[str, Any] = {}
    for name, entry in registry.KINDS.items():
        columns = [c for c, (k, _) in kinds.items() if k == name]
        if columns:
            table, values, kept = entry.load().decode(table, columns, where, options)
            decoded = _joined(decoded, values, kept)
    return table, decoded


def say_kinds(kinds: dict[str, tuple[str, str]], where: Source) -> None:
    """The line that says each column's kind."""
    where.say("   Columns: " + _kinds_line(kinds) + " (--kind COLUMN=KIND to change)")


def _joined(decoded: dict[str, Any], values: dict[str, Any], kept: Any) -> dict[str, Any]:
    """Values decoded so far, less the rows a later kind dropped, with the new ones."""
    if kept is not None:
        decoded = {k: _take(v, kept) for k, v in decoded.items()}
    return decoded | values


def _kinds_line(kinds: dict[str, tuple[str, str]]) -> str:
    """ "number a, b; category c (2 more)" in registry order."""
    parts = []
    for name in registry.KINDS:
        columns = [c for c, (k, _) in kinds.items() if k == name]
        if columns:
            parts.append(f"{name} {list_names(columns, shown=6)}")
    return "; ".join(parts)


def _take(values: Any, rows: np.ndarray) -> Any:
    """A block's decoded values at `rows` (dropped rows left out)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.take(arrow.from_numpy(rows))
    if isinstance(values, torch.Tensor):
        return values[torch.from_numpy(rows)]
    return values[rows]


def _label_key(value: Any) -> Any:
    # 1 and 1.0 and True name the same class in different file formats; text stays text.
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return value
