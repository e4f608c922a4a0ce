"""Your own data: check a table, choose the task, encode it as tensors and back.

Tables are read by torchwork.read. Every problem a user can fix is one TorchworkError that
names the file, the column and, where it helps, the row (data rows count from 1, after the
header).
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from torchwork import arrow
from torchwork.config import Task
from torchwork.errors import DataError

MAX_CLASSES = 100  # more distinct labels than this is not a classification target
MAX_AUTO_INTEGER_CLASSES = 10  # integer targets with at most this many values are classes


def table_to_tensor(table: pa.Table, columns: Sequence[str]) -> torch.Tensor:
    """Numeric columns as one contiguous float32 tensor of shape [rows, len(columns)]."""
    return _write_rows(table.num_rows, [_NumericColumn(table.column(name)) for name in columns])


class _NumericColumn:
    """Writes one numeric column into a slab of input columns, standardized if asked."""

    width = 1

    def __init__(self, column: pa.ChunkedArray, mean: float = 0.0, std: float = 1.0) -> None:
        self.arrays = [
            arrow.float_values(chunk) if chunk.null_count else arrow.to_numpy(chunk)
            for chunk in column.chunks
        ]
        self.starts = np.cumsum([0] + [len(a) for a in self.arrays]).tolist()
        self.scaled = (mean, std) != (0.0, 1.0)
        self.mean, self.std = np.float32(mean), np.float32(std)

    def write(self, out: np.ndarray, first: int, last: int) -> None:
        k = bisect.bisect_right(self.starts, first) - 1  # the chunk holding row `first`
        row = first
        while row < last:
            end = min(last, self.starts[k + 1])
            out[0, row - first : end - first] = self.arrays[k][
                row - self.starts[k] : end - self.starts[k]
            ]
            row, k = end, k + 1
        if self.scaled:
            # float32 arithmetic, as (x - mean) / std on a float32 tensor would do it
            values = out[0, : last - first]
            values -= self.mean
            values /= self.std


class _OneHotColumn:
    """Writes one input column per category: 1 where the row holds it, else 0."""

    def __init__(self, codes: np.ndarray, categories: int) -> None:
        self.codes = codes
        self.width = categories

    def write(self, out: np.ndarray, first: int, last: int) -> None:
        codes = self.codes[first:last]
        for c in range(self.width):
            np.equal(codes, c, out=out[c, : last - first])


def _write_rows(rows: int, columns: Sequence[Any], order: np.ndarray | None = None) -> torch.Tensor:
    """Input columns, each written by its writer, as one contiguous float32 tensor [rows, width]
    (with `order`: [len(order), width], whose row k is source row order[k]).

    Row-major output from column-major input, one slab of rows at a time: each writer puts
    its columns' rows of the slab into a small cache-resident scratch block, which one
    transposing copy writes out (to the rows' places in `order`). The output is the only
    large allocation, made by torch: numpy asks the kernel for huge pages, slow to fault in
    here (1M x 20 in a fresh process: 0.2 s with two numpy arrays, 0.04 s this way). numpy
    releases the GIL while copying, so large tables use a thread per core.
    """
    width = sum(c.width for c in columns)
    place = None
    if order is not None:
        place = np.full(rows, -1, dtype=np.int64)
        place[order] = np.arange(len(order))
    out = torch.empty((rows if order is None else len(order), width), dtype=torch.float32)
    target = out.numpy()
    step = max(1024, _SCRATCH_VALUES // max(width, 1))
    offsets = np.cumsum([0] + [c.width for c in columns]).tolist()
    local = threading.local()

    def slab(first: int) -> None:
        last = min(first + step, rows)
        scratch = getattr(local, "scratch", None)
        if scratch is None:
            scratch = local.scratch = np.empty((width, step), dtype=np.float32)
        for column, offset in zip(columns, offsets[:-1], strict=True):
            column.write(scratch[offset : offset + column.width], first, last)
        block = scratch[:, : last - first].T
        if place is None:
            target[first:last] = block
        else:
            where = place[first:last]
            kept = where >= 0  # rows in no split are not written
            target[where[kept]] = block[kept]

    if rows * width < 1 << 20:
        for first in range(0, rows, step):
            slab(first)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=torch.get_num_threads()) as pool:
            list(pool.map(slab, range(0, rows, step)))
    return out


_SCRATCH_VALUES = 1 << 19  # 2 MB of float32 per thread: stays in cache


def is_numeric(type_: pa.DataType) -> bool:
    return (
        pa.types.is_integer(type_)
        or pa.types.is_floating(type_)
        or pa.types.is_boolean(type_)
        or pa.types.is_decimal(type_)
    )


def is_text(type_: pa.DataType) -> bool:
    return (
        pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_dictionary(type_)
    )


def _first_row(mask: np.ndarray) -> tuple[int, int]:
    """(first 1-based row where mask is true, how many rows in all)."""
    rows = np.flatnonzero(mask)
    return int(rows[0]) + 1, len(rows)


def _more(count: int) -> str:
    return f" (and {count - 1} more row{'s' if count > 2 else ''})" if count > 1 else ""


def _names(names: Sequence[str], quote: bool = False, shown: int = 20) -> str:
    """Column names for a message: the first few, then how many more."""
    listed = [repr(n) if quote else n for n in names[:shown]]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(listed) + more


def _looks_numeric(text: str) -> bool:
    # As Arrow reads numbers: no spaces, digit separators or non-ASCII digits, which Python's
    # float() accepts and Arrow's cast does not.
    if not text.isascii() or "_" in text or text != text.strip():
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def select_columns(
    table: pa.Table,
    target: str,
    features: Sequence[str],
    source: str,
    exclude: Sequence[str] = (),
) -> tuple[str, list[str]]:
    """The target column (default: the last) and feature columns (default: all others, less
    those in `exclude`)."""
    names = table.column_names
    known = _names(names)
    target = target or names[-1]
    if target not in names:
        raise DataError(f"target column '{target}' is not in {source}; its columns are {known}")
    for flag, given in (("--features", features), ("--exclude", exclude)):
        unknown = [f for f in given if f not in names]
        if unknown:
            raise DataError(
                f"{flag}: column{'s' if len(unknown) > 1 else ''} {_names(unknown, quote=True)} "
                f"not in {source}; its columns are {known}"
            )
        if target in given:
            raise DataError(f"'{target}' is the target: leave it out of {flag}")
    if features:
        features = list(dict.fromkeys(features))
    else:
        features = [n for n in names if n != target and n not in exclude]
    if not features:
        raise DataError(
            f"{source} has only the target column '{target}': it needs feature columns too"
        )
    return target, list(features)


def check_values(
    table: pa.Table,
    columns: Sequence[str],
    source: str,
    dropna: bool = False,
    log: Callable[[str], None] | None = None,
    fix: str = "add --dropna to drop such rows",
) -> pa.Table:
    """Refuse (or with dropna, drop) rows with empty or NaN cells; refuse infinite values.

    Text in a column that is otherwise numbers is an error naming the value and row.
    """
    missing = np.zeros(table.num_rows, dtype=bool)
    for name in columns:
        column = table.column(name)
        type_ = column.type
        if pa.types.is_null(type_):
            raise DataError(
                f"column '{name}' of {source} is empty in every row: fill it in or leave it out"
            )
        if not (is_numeric(type_) or is_text(type_)):
            raise DataError(
                f"column '{name}' of {source} holds {type_} values, not numbers or text: "
                "convert it to numbers, or leave it out with --features"
            )
        distinct = arrow.unique(column) if is_text(type_) else []
        if is_text(type_) and _check_mixed(column, distinct, name, source):
            # Numbers stored as text (an Excel column formatted as text, say): read as numbers.
            try:
                column = arrow.cast(column, pa.float64())
            except pa.ArrowInvalid as e:
                raise DataError(
                    f"column '{name}' of {source} holds text that is not a number: {e}"
                ) from None
            table = table.set_column(table.column_names.index(name), name, column)
            type_ = column.type
        elif is_text(type_) and log is not None:
            _point_out_formatted_numbers(distinct, name, source, log)
        if _all_present_and_finite(column):
            continue
        present = [arrow.validity(chunk) for chunk in column.chunks]
        col_missing = np.concatenate(
            [
                np.zeros(len(c), bool) if p is None else ~p
                for c, p in zip(column.chunks, present, strict=True)
            ]
        )
        if pa.types.is_floating(type_):
            values = arrow.float_values(column, np.float64)
            col_missing = col_missing | np.isnan(values)
            infinite = np.isinf(values)
            if infinite.any():
                row, count = _first_row(infinite)
                raise DataError(
                    f"column '{name}' of {source} has an infinite value in row {row}{_more(count)}: "
                    "replace it with a finite number"
                )
            huge = np.abs(values) > np.finfo(np.float32).max
            if huge.any():
                row, count = _first_row(huge)
                raise DataError(
                    f"column '{name}' of {source} has a value too large for 32-bit floats in row "
                    f"{row}{_more(count)}: rescale the column"
                )
        if col_missing.any() and not dropna:
            row, count = _first_row(col_missing)
            raise DataError(
                f"column '{name}' of {source} has an empty or NaN cell in row {row}{_more(count)}: "
                f"fill it in, or {fix}"
            )
        missing |= col_missing
    if missing.any():
        dropped = int(missing.sum())
        table = table.filter(arrow.from_numpy(~missing))
        if log is not None:
            log(f"   --dropna: dropped {dropped} of {len(missing)} rows with empty or NaN cells")
        if table.num_rows == 0:
            raise DataError(
                f"every row of {source} has an empty or NaN cell: nothing is left to learn from"
            )
    return table


def _all_present_and_finite(column: pa.ChunkedArray) -> bool:
    """True when a column has no empty cell and no NaN, infinite or float32-overflowing
    value: a pass over the values with nothing allocated, so that the row-by-row look
    for the first bad cell is only made where there is one."""
    if column.null_count:
        return False
    if not pa.types.is_floating(column.type):
        return True
    limit = np.finfo(np.float32).max
    for chunk in column.chunks:
        if len(chunk):
            values = arrow.to_numpy(chunk)
            low, high = values.min(), values.max()  # NaN if any value is NaN
            if not (-limit <= low and high <= limit):
                return False
    return True


def require_numbers(
    table: pa.Table, columns: Sequence[str], source: str, fix: str = "fix or remove those rows"
) -> pa.Table:
    """check_values, then refuse any column that does not hold numbers: for models that take
    the columns as they are, with no stored encoding."""
    table = check_values(table, columns, source, fix=fix)
    for name in columns:
        type_ = table.column(name).type
        if not is_numeric(type_):
            raise DataError(
                f"column '{name}' of {source} is not numeric ({type_}): give numbers only"
            )
    return table


# Numbers written for people: digit groups ("1,234,567", "1.234.567,5", "1 234") or a
# decimal comma ("3,14"), which a CSV reader takes for text.
_FORMATTED_NUMBER = re.compile(r"[+-]?(\d{1,3}([,. '\u00a0]\d{3})+([.,]\d+)?|\d+,\d+)")


def _point_out_formatted_numbers(
    distinct: list[str], name: str, source: str, log: Callable[[str], None]
) -> None:
    """A warning for a text column (of these distinct values) whose values look like numbers
    with digit separators or a decimal comma: one-hot encoded, one category per value."""
    formatted = _formatted_numbers(distinct)
    if formatted:
        log(
            f"   Warning: column '{name}' of {source} holds text that looks like numbers "
            f"({formatted!r}): it is encoded as categories, not as a number; remove the digit "
            "separators, or for a decimal comma give --decimal , (and --delimiter ;)"
        )


def _formatted_numbers(distinct: list[str]) -> str:
    """One of a text column's distinct values (the first 1000 are looked at) when most (90%)
    of them are numbers written for people, or ""."""
    distinct = distinct[:1000]
    formatted = [v for v in distinct if _FORMATTED_NUMBER.fullmatch(v.strip())]
    return formatted[0] if formatted and len(formatted) * 10 >= len(distinct) * 9 else ""


def _check_mixed(column: pa.ChunkedArray, distinct: list[str], name: str, source: str) -> bool:
    """True when a text column (of these distinct values) holds only numbers; an error when
    it holds mostly numbers."""
    # A column of numbers with a typo is read as text; say so instead of one-hot encoding it.
    numeric = [v for v in distinct if _looks_numeric(v)]
    if numeric and len(numeric) == len(distinct):
        return True
    if numeric and len(numeric) * 2 >= len(distinct):
        bad = next(v for v in distinct if not _looks_numeric(v))
        import pyarrow.compute as pc  # a mistake to report: the full toolkit is fine

        mask = pc.equal(column, bad).fill_null(False).to_numpy(zero_copy_only=False)
        row, count = _first_row(mask)
        raise DataError(
            f"column '{name}' of {source} has a non-numeric value {bad!r} in row {row}{_more(count)}: "
            "it should hold numbers; fix or remove that value"
        )
    return False


def _sorted_labels(values: list[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _plain(value: Any) -> Any:
    # JSON-friendly labels: 1.0 read from a float column stays 1.0; numpy scalars become Python.
    return value.item() if hasattr(value, "item") else value


def detect_task(
    column: pa.ChunkedArray, requested: str, name: str, source: str
) -> tuple[Task, str]:
    """The task and a sentence saying why: two values are binary, a few integer or text labels
    multiclass, anything else regression."""
    # A numeric target often has as many distinct values as rows: where its first rows
    # already have too many for classes, the rest need not be counted.
    head = arrow.compute("count_distinct", column.slice(0, 50 * MAX_CLASSES)).as_py()
    count = head if head > MAX_CLASSES else arrow.compute("count_distinct", column).as_py()
    many = f"more than {MAX_CLASSES}" if count > MAX_CLASSES else str(count)
    type_ = column.type
    # The values themselves only matter for a few of them (classes); a numeric target
    # often has as many distinct values as rows.
    distinct = [_plain(v) for v in arrow.unique(column)] if count <= MAX_CLASSES else []
    integral = (
        count <= MAX_CLASSES
        and is_numeric(type_)
        and all(float(v).is_integer() for v in distinct if not isinstance(v, bool))
    )
    if requested == "regression":
        if is_text(type_):
            raise DataError(
                f"target '{name}' of {source} holds text, which cannot be regressed: use --task binary or multiclass"
            )
        return "regression", "asked for with --task"
    if requested in ("binary", "multiclass"):
        if count < 2:
            raise DataError(
                f"target '{name}' of {source} has only one value: classification needs two or more"
            )
        if requested == "binary" and count != 2:
            raise DataError(
                f"target '{name}' of {source} has {many} distinct values, not 2: use --task multiclass"
            )
        if count > MAX_CLASSES:
            raise DataError(
                f"target '{name}' of {source} has {many} distinct values, too many classes (at most {MAX_CLASSES})"
            )
        return requested, "asked for with --task"
    if count < 2:
        raise DataError(
            f"target '{name}' of {source} has the same value in every row: nothing to learn"
        )
    if count == 2:
        return "binary", f"target '{name}' has 2 distinct values"
    if is_text(type_):
        if count > MAX_CLASSES:
            formatted = _formatted_numbers(arrow.unique(column.slice(0, 100_000)))
            fix = (
                f"it looks like numbers ({formatted!r}): remove the digit separators, or for a "
                "decimal comma give --decimal , (and --delimiter ;)"
                if formatted
                else "give a numeric target for regression"
            )
            raise DataError(
                f"target '{name}' of {source} holds text with {many} distinct values, too many classes "
                f"(at most {MAX_CLASSES}); {fix}"
            )
        return "multiclass", f"target '{name}' has {count} distinct text labels"
    if integral and count <= MAX_AUTO_INTEGER_CLASSES:
        return "multiclass", f"target '{name}' has {count} distinct whole-number labels"
    return "regression", f"target '{name}' is numeric with {many} distinct values"


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
                categories = _sorted_labels(arrow.unique(column))
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
                f"different one ({_names([f'{n!r} ({v})' for n, v in constant] + ids)}): "
                "nothing to learn from"
            )
        if ids:
            say(
                f"   Left out {len(ids)} text column(s) with a different value in every row, "
                f"as IDs are: {_names(ids)} (name them in --features to keep them)"
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
            encoder.labels = _sorted_labels([_plain(v) for v in arrow.unique(column)])
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
                    _NumericColumn(column, f.mean, f.std) if scaled else _NumericColumn(column)
                )
            else:
                writers.append(_OneHotColumn(self._codes(column, f, source), f.width))
        return _write_rows(table.num_rows, writers, order)

    def _codes(self, column: pa.ChunkedArray, f: Feature, source: str) -> np.ndarray:
        """Each row's position in the feature's categories; an unseen category is an error,
        or with `other`, the position after them."""
        found = _category_codes(column, f.categories)
        if found.null_count and f.other:
            codes = arrow.float_values(found, np.float64)
            return np.where(np.isnan(codes), len(f.categories), codes).astype(np.int64)
        if found.null_count:
            unseen = np.isnan(arrow.float_values(found))
            row, count = _first_row(unseen)
            value = column[row - 1].as_py()
            raise DataError(
                f"column '{f.name}' of {source} has the category {value!r} in row {row}{_more(count)}, "
                f"which the model never saw; known categories: {_names([str(c) for c in f.categories])}"
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
            return {"prediction": values}
        if self.task == "binary":
            p = torch.sigmoid(outputs.reshape(-1))
            probabilities = torch.stack([1 - p, p], dim=1)
            index = (p >= 0.5).long()
        else:
            probabilities = torch.softmax(outputs, dim=1)
            index = outputs.argmax(dim=1)
        return {"index": index, "probabilities": probabilities}

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
