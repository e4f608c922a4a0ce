"""The encoder: table rows to model inputs (scaled numbers, one-hot categories) and model
outputs back to predictions in the data's own terms; stored in the model file."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from torchwork.errors import DataError
from torchwork.metrics import decode_classes
from torchwork.registry import Task
from torchwork.tables import arrow
from torchwork.tables.check import (
    MAX_CLASSES,
    first_row,
    is_numeric,
    is_text,
    list_names,
    more,
    plain,
    sorted_labels,
)
from torchwork.tables.convert import NumericColumn, OneHotColumn, table_to_tensor, write_rows


@dataclass
class Feature:
    name: str
    kind: str  # "numeric" or "categorical"
    categories: list[Any] = field(default_factory=list)  # one-hot order, for categorical
    mean: float = 0.0  # standardization, fitted on the training rows (numeric only)
    std: float = 1.0
    other: bool = False  # categorical: one more input for every category not listed

    @property
    def width(self) -> int:
        """How many model inputs the feature takes."""
        return 1 if self.kind == "numeric" else len(self.categories) + self.other

    @property
    def input_names(self) -> list[str]:
        if self.kind == "numeric":
            return [self.name]
        return [f"{self.name}={c}" for c in self.categories] + [f"{self.name}=(other)"] * self.other


@dataclass
class TableEncoder:
    """Turns table rows into model inputs and model outputs back into predictions.

    Fitted once on the training rows (scaling) and the whole table (category and label
    names), then stored in the model file so prediction applies exactly the same encoding.
    """

    features: list[Feature]
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
        source: str,
        categorical: str = "auto",
        scale: bool = True,
        scale_target: bool = True,
        max_categories: int = 0,
        log: Callable[[str], None] | None = None,
        keep_ids: bool = False,
    ) -> TableEncoder:
        """Fitted on `table`: a feature with the same value in every row is left out (with a
        line to `log`), and so is a text column with a different value in every row (an ID)
        unless `keep_ids`; a text column with many categories is pointed out, and with
        `max_categories` only its most frequent ones on the training rows are kept."""
        say = log if log is not None else _silent
        specs, constant, ids = [], [], []
        train = _TrainingRows(np.asarray(train_rows), table.num_rows)
        for name in features:
            column = table.column(name)
            if is_text(column.type):
                if categorical != "auto":
                    raise DataError(
                        f"column '{name}' of {source} holds text: use --categorical auto to one-hot "
                        f"encode it, or leave it out with --exclude {name}"
                    )
                categories = sorted_labels(arrow.unique(column))
                if len(categories) < 2:
                    constant.append((name, repr(categories[0])))
                    continue
                if len(categories) == table.num_rows > MANY_CATEGORIES and not keep_ids:
                    ids.append(name)
                    continue
                feature = Feature(name, "categorical", categories)
                if max_categories and len(categories) > max_categories:
                    feature = _most_frequent(feature, column, train, max_categories)
                _point_out_many(feature, len(categories), table.num_rows, source, say)
                specs.append(feature)
                continue
            values = _float32_values(column)
            if values.max() == values.min():
                constant.append((name, f"{float(values[0]):g}"))
                continue
            mean, std = 0.0, 1.0
            if scale:
                mean, std = train.mean_std(values)
            specs.append(Feature(name, "numeric", mean=mean, std=std))
        if (constant or ids) and not specs:
            raise DataError(
                f"every feature column of {source} has the same value in every row or a "
                f"different one ({list_names([f'{n!r} ({v})' for n, v in constant] + ids)}): "
                "nothing to learn from"
            )
        if ids:
            say(
                f"   Left out {len(ids)} text column(s) with a different value in every row, "
                f"as IDs are: {list_names(ids)} (name them in --features to keep them)"
            )
        if constant:
            shown = ", ".join(f"'{n}' ({v})" for n, v in constant[:5])
            more = f" and {len(constant) - 5} more" if len(constant) > 5 else ""
            say(
                f"   Left out {len(constant)} column(s) with the same value in every row: "
                f"{shown}{more}"
            )
        encoder = cls(specs, target, task)
        column = table.column(target)
        if task == "regression":
            if scale_target:
                encoder.target_mean, encoder.target_std = train.mean_std(_float32_values(column))
        else:
            encoder.labels = sorted_labels([plain(v) for v in arrow.unique(column)])
        return encoder

    @property
    def input_names(self) -> list[str]:
        """The model's input columns: numeric features, then one column per category."""
        return [name for f in self.features for name in f.input_names]

    @property
    def in_features(self) -> int:
        return len(self.input_names)

    @property
    def out_features(self) -> int:
        return len(self.labels) if self.task == "multiclass" else 1

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def transform(
        self,
        table: pa.Table,
        source: str = "the input",
        scaled: bool = True,
        order: np.ndarray | None = None,
    ) -> torch.Tensor:
        """Encode the feature columns of `table` as a float32 tensor [rows, in_features]:
        numeric columns standardized (as they are with `scaled=False`), text columns one
        input per category. Every row is written once, straight into the result; with
        `order`, row k of the result is table row order[k] (rows not in it are left out)."""
        missing = [n for n in self.feature_names if n not in table.column_names]
        if missing:
            raise DataError(f"{source} lacks the model's feature column(s): {', '.join(missing)}")
        writers: list[Any] = []
        for f in self.features:
            column = table.column(f.name)
            if f.kind == "numeric":
                if not is_numeric(column.type):
                    raise DataError(
                        f"column '{f.name}' of {source} must hold numbers (it holds {column.type})"
                    )
                writers.append(
                    NumericColumn(column, f.mean, f.std) if scaled else NumericColumn(column)
                )
            else:
                writers.append(OneHotColumn(self._codes(column, f, source), f.width))
        return write_rows(table.num_rows, writers, order)

    def _codes(self, column: pa.ChunkedArray, f: Feature, source: str) -> np.ndarray:
        """Each row's position in the feature's categories; an unseen category is an error,
        or with `other`, the position after them."""
        found = _category_codes(column, f.categories)
        if found.null_count and f.other:
            codes = arrow.float_values(found, np.float64)
            return np.where(np.isnan(codes), len(f.categories), codes).astype(np.int64)
        if found.null_count:
            unseen = np.isnan(arrow.float_values(found))
            row, count = first_row(unseen)
            value = column[row - 1].as_py()
            raise DataError(
                f"column '{f.name}' of {source} has the category {value!r} in row {row}{more(count)}, "
                f"which the model never saw; known categories: {list_names([str(c) for c in f.categories])}"
            )
        return _integers(found)

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
            return torch.from_numpy(_integers(found).astype(np.int64))
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

        Regression: {"prediction": float32 tensor [rows]}. Classification: the predicted
        class indices, "index", and the class probabilities [rows, classes]; `labels_of`
        names the classes (a list of millions of labels is not made unless asked for).
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TableEncoder:
        """The encoder stored in a model file, every field checked: a hand-edited or damaged
        file is an error, never wrong numbers."""
        try:
            features = [Feature(**f) for f in raw["features"]]
            encoder = cls(
                features,
                raw["target"],
                raw["task"],
                list(raw.get("labels", [])),
                float(raw.get("target_mean", 0.0)),
                float(raw.get("target_std", 1.0)),
                [float(v) for v in raw.get("interval", [])],
                float(raw.get("temperature", 1.0)),
                float(raw.get("threshold", 0.5)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"the stored preprocessing is incomplete or malformed: {e}") from None
        labels = raw.get("labels", [])
        if not isinstance(labels, list) or not all(
            isinstance(v, (str, int, float, bool)) for v in labels
        ):
            problem = "labels must be a list of names or numbers"
        else:
            problem = encoder._problem()
        if problem:
            raise DataError(f"the stored preprocessing is malformed: {problem}")
        return encoder

    def _problem(self) -> str:
        """What is wrong with this encoder's fields, or "" when nothing is."""
        names = self.feature_names
        if not names:
            return "it has no feature columns"
        if not all(isinstance(n, str) for n in [*names, self.target]):
            return "a column name is not text"
        if len(set(names)) < len(names) or self.target in names:
            return "a column name appears twice"
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
        for f in self.features:
            if f.kind == "numeric":
                if (
                    f.categories
                    or f.other is not False
                    or not all(
                        isinstance(v, (int, float)) and math.isfinite(v) for v in (f.mean, f.std)
                    )
                ):
                    return f"feature '{f.name}' needs a finite mean and std and no categories"
                if not f.std > 0:
                    return f"feature '{f.name}' has std {f.std}, not above 0"
            elif f.kind == "categorical":
                if not isinstance(f.other, bool):
                    return f"feature '{f.name}' has a non-boolean 'other'"
                if not isinstance(f.categories, list) or not f.categories:
                    return f"feature '{f.name}' has no categories"
                if len({str(c) for c in f.categories}) < len(f.categories):
                    return f"feature '{f.name}' lists a category twice"
            else:
                return f"feature '{f.name}' has unknown kind {f.kind!r}"
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


def _silent(_: str) -> None:
    pass


MANY_CATEGORIES = 100  # a text column with more is pointed out, with the ways to cap it
ID_SHARE = 0.5  # ...and one with a different value in at least this share of rows looks like an ID


def _category_codes(column: pa.ChunkedArray, categories: list[Any]) -> pa.ChunkedArray:
    """Each row's position in `categories` (null where it is not one of them)."""
    values = arrow.cast(column, pa.string()) if not is_text(column.type) else column
    return arrow.index_in(values, arrow.from_values([str(c) for c in categories]))


def _most_frequent(
    feature: Feature, column: pa.ChunkedArray, train: _TrainingRows, keep: int
) -> Feature:
    """The feature with only its `keep` most frequent categories on the training rows (ties
    in sorted order), the others, and any category seen later, as one `other` input."""
    codes = _integers(_category_codes(column, feature.categories))
    counts = train.counts(codes, len(feature.categories))
    kept = np.sort(np.argsort(-counts, kind="stable")[:keep])
    categories = [feature.categories[i] for i in kept]
    return Feature(feature.name, "categorical", categories, other=True)


def _point_out_many(
    feature: Feature, distinct: int, rows: int, source: str, say: Callable[[str], None]
) -> None:
    """A line about a text column that takes many inputs, with the ways to cap it."""
    name = feature.name
    if distinct < MANY_CATEGORIES and distinct < ID_SHARE * rows:
        return
    if feature.other:
        say(
            f"   Column '{name}': its {len(feature.categories)} most frequent of {distinct:,} "
            "categories kept, the others as one 'other' input (--max-categories)"
        )
    elif distinct >= ID_SHARE * rows:
        say(
            f"   Warning: column '{name}' of {source} has a different value in {distinct:,} of "
            f"{rows:,} rows: it looks like an ID, which a model cannot learn from; leave it "
            f"out with --exclude {name}"
        )
    else:
        say(
            f"   Warning: column '{name}' of {source} has {distinct:,} categories, one model "
            f"input each: keep the most frequent with --max-categories 50, or leave it out "
            f"with --exclude {name}"
        )


def _float32_values(column: pa.ChunkedArray) -> np.ndarray:
    """A numeric column as float32 values, as the model sees them."""
    return arrow.float_values(column, np.float32)


def _integers(column: pa.ChunkedArray) -> np.ndarray:
    """An integer column without nulls as one array."""
    parts = [arrow.to_numpy(chunk) for chunk in column.chunks]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


class _TrainingRows:
    """Means and standard deviations over the training rows of a column, from sums over
    whichever is fewer: the training rows themselves, or all rows less the others. A sum
    over all rows reads them in order; a gather of 1.6M of 2M rows took 40 ms a column here.
    """

    def __init__(self, rows: np.ndarray, total: int) -> None:
        self.count = len(rows)
        self.negate = 2 * len(rows) > total
        if self.negate:
            others = np.ones(total, dtype=bool)
            others[rows] = False
            rows = np.flatnonzero(others)
        self.rows = rows

    def counts(self, codes: np.ndarray, size: int) -> np.ndarray:
        """How many training rows hold each code in range(size)."""
        counts = np.bincount(codes[self.rows], minlength=size)
        return np.bincount(codes, minlength=size) - counts if self.negate else counts

    def mean_std(self, values: np.ndarray) -> tuple[float, float]:
        """In float64, each rounded to float32 as stored; a std of 0 (constant on the
        training rows) becomes 1: centre the column, do not divide by zero."""
        # Sums of values less a shift near their mean: the variance from them keeps its
        # digits however far from zero the values lie.
        shift = float(np.mean(values[:1024], dtype=np.float64))

        def sums(part: np.ndarray) -> tuple[float, float]:
            centred = part.astype(np.float64) - shift
            return float(centred.sum()), float(np.dot(centred, centred))

        first, second = sums(values[self.rows])
        if self.negate:
            every = sums(values)
            first, second = every[0] - first, every[1] - second
        mean = first / self.count
        variance = max(second / self.count - mean * mean, 0.0) if self.count > 1 else 0.0
        std = math.sqrt(variance)
        return float(np.float32(shift + mean)), float(np.float32(std)) if std > 0 else 1.0


def _label_key(value: Any) -> Any:
    # 1 and 1.0 and True name the same class in different file formats; text stays text.
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return value
