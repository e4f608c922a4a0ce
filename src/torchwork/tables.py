"""Your own data: read a table, check it, choose the task, encode it as tensors and back.

Tables are read with pyarrow (typed, multithreaded). Every problem a user can fix is one
TorchworkError that names the file, the column and, where it helps, the row (data rows
count from 1, after the header).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from torchwork.errors import TorchworkError

if TYPE_CHECKING:
    import pyarrow.csv as pcsv


TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".xlsx", ".npy", ".npz")
MAX_CLASSES = 100  # more distinct labels than this is not a classification target
MAX_AUTO_INTEGER_CLASSES = 10  # integer targets with at most this many values are classes


def read_table(path: str | Path) -> pa.Table:
    """Read a .csv/.tsv, .parquet, .xlsx, .npy (rows, target last) or .npz (X and y) file."""
    path = Path(path)
    if not path.exists():
        raise TorchworkError(f"data file {path} does not exist")
    if path.is_dir():
        raise TorchworkError(f"{path} is a folder: give a data file")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise TorchworkError(f"cannot read {path}: use a {', '.join(TABLE_SUFFIXES)} file")
    if path.stat().st_size == 0:
        raise TorchworkError(f"{path} is empty: it needs a header row and data rows")
    try:
        if suffix in (".csv", ".tsv"):
            table = _read_csv(path, "\t" if suffix == ".tsv" else ",")
        elif suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        elif suffix == ".xlsx":
            table = _read_excel(path)
        else:
            table = _read_numpy(path)
        names = table.column_names  # decodes the header, which may not be valid UTF-8
    except TorchworkError:
        raise
    except UnicodeDecodeError:
        raise TorchworkError(
            f"cannot read {path}: it is not UTF-8 text; save it as UTF-8"
        ) from None
    except (pa.ArrowException, OSError, ValueError, KeyError, EOFError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TorchworkError(f"cannot read {path} as {suffix[1:]}: {reason}") from None
    except Exception as e:  # zip and Excel readers raise their own error types
        raise TorchworkError(
            f"cannot read {path} as {suffix[1:]}: {type(e).__name__}: {e}"
        ) from None
    if table.num_columns == 0:
        raise TorchworkError(f"{path} has no columns")
    if table.num_rows == 0:
        raise TorchworkError(f"{path} has a header but no data rows")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TorchworkError(f"{path} has duplicate column names: {', '.join(duplicates)}")
    return table


_CSV_BLOCK = 1 << 20  # pyarrow's default block; it infers column types from the first one
_CSV_SPLIT_BYTES = 16 << 20  # unquoted files at least this large are read in parts


def _read_csv(path: Path, delimiter: str) -> pa.Table:
    """Read a CSV/TSV file as pyarrow's reader would with every missing-value marker ("",
    "NA", "null", ...) and empty text as missing, only faster (see _read_csv_fast)."""
    import pyarrow.csv as pcsv

    raw = _map_file(path)
    data = pa.py_buffer(raw)
    header_end = _line_end(raw, 0)
    # A quoted value may hold a newline: pyarrow must be told, or it cuts its blocks inside
    # such values and fails on (or misreads) a valid file larger than one block.
    quoted = raw.find(b'"', header_end) >= 0
    parse = pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=quoted)
    # Empty text cells are missing values too, not empty-string categories.
    full = pcsv.ConvertOptions(strings_can_be_null=True)
    if not quoted:
        try:
            table = _read_csv_fast(raw, data, header_end, parse)
        except pa.ArrowInvalid:
            table = None  # a late value that does not fit its column's type, or a bad row
        if table is not None:
            return table
    return _read_csv_buffer(data, parse, full)


def _read_csv_fast(
    raw: Any, data: pa.Buffer, header_end: int, parse: pcsv.ParseOptions
) -> pa.Table | None:
    """The file read with no missing-value markers, or None where they could matter.

    Without markers pyarrow converts numbers about 15% faster: no cell is compared with
    "", "NA", "null", ... The first block decides: where any column in it comes out as
    text, or as floats holding NaN ("NaN" parses as a float), markers could matter and the
    caller reads the file once with them. A column where that shows only later is read
    again with markers (and a late value that does not fit its column's type raises
    ArrowInvalid). Large files are read in parts, one per core (_read_csv_parts).
    """
    import pyarrow.csv as pcsv

    fast = pcsv.ConvertOptions(null_values=[], quoted_strings_can_be_null=False)
    head_end = _line_end(raw, _CSV_BLOCK)
    head = _read_csv_buffer(data.slice(0, head_end), parse, fast, _serial())
    names = head.column_names
    if len(set(names)) < len(names):  # duplicate names: read_table reports them
        return None
    if not all(_markers_cannot_matter(column) for column in head.columns):
        return None
    if head_end == data.size:
        return head
    if pa.cpu_count() > 1 and data.size >= _CSV_SPLIT_BYTES:
        types = dict(zip(names, head.schema.types, strict=True))
        table = _read_csv_parts(raw, data, header_end, parse, types)
    else:
        table = _read_csv_buffer(data, parse, fast)
    again = [n for n in names if not _markers_cannot_matter(table.column(n))]
    if again:
        full = pcsv.ConvertOptions(strings_can_be_null=True, include_columns=again)
        reread = _read_csv_buffer(data, parse, full)
        if reread.num_rows != table.num_rows:
            return None
        for name in again:
            table = table.set_column(names.index(name), name, reread.column(name))
    return table


def _read_csv_parts(
    raw: Any,
    data: pa.Buffer,
    header_end: int,
    parse: pcsv.ParseOptions,
    types: dict[str, pa.DataType],
) -> pa.Table:
    """An unquoted CSV cut at line ends into one part per core, each read by a serial reader
    on its own thread with the column types of the first block (a row that does not fit
    them raises ArrowInvalid). Only for files without quotes: a cut could fall inside a
    quoted value.

    pyarrow's threaded reader holds much more of the file parsed at once: for 1M x 20
    (218 MB) its peak memory was 636 MB against 385 MB this way, and faulting in less fresh
    memory makes a fresh process's read about 10% faster (slower by as much when the same
    process reads the file again and again).
    """
    import pyarrow.csv as pcsv

    size, parts = data.size, pa.cpu_count()
    convert = pcsv.ConvertOptions(
        null_values=[], quoted_strings_can_be_null=False, column_types=types
    )
    cuts = sorted({max(header_end, _line_end(raw, size * k // parts)) for k in range(1, parts)})
    spans = [(a, b) for a, b in zip([0, *cuts], [*cuts, size], strict=True) if b > a]
    names = list(types)

    def part(span: tuple[int, int]) -> pa.Table:
        start, end = span
        read = _serial() if start == 0 else pcsv.ReadOptions(use_threads=False, column_names=names)
        return _read_csv_buffer(data.slice(start, end - start), parse, convert, read)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(spans)) as pool:
        return pa.concat_tables(list(pool.map(part, spans)))


def _serial() -> pcsv.ReadOptions:
    import pyarrow.csv as pcsv

    return pcsv.ReadOptions(use_threads=False)


def _read_csv_buffer(
    data: pa.Buffer,
    parse: pcsv.ParseOptions,
    convert: pcsv.ConvertOptions,
    read: pcsv.ReadOptions | None = None,
) -> pa.Table:
    import pyarrow.csv as pcsv

    # The system allocator: with pyarrow's default, mimalloc (it asks for huge pages), a
    # fresh process's read took 0.1 to 0.4 s longer, at random, here.
    return pcsv.read_csv(
        pa.BufferReader(data),
        read_options=read,
        parse_options=parse,
        convert_options=convert,
        memory_pool=pa.system_memory_pool(),
    )


def _map_file(path: Path) -> Any:
    """The file's bytes, memory-mapped where possible (it saves pyarrow a copy of each block,
    about 10% faster): a bytes-like object with find()."""
    import mmap

    try:
        with open(path, "rb") as f:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # a pipe or another file that cannot be mapped
        return path.read_bytes()


def _line_end(raw: Any, position: int) -> int:
    """The offset just after the first newline at or after position (or the end)."""
    found = raw.find(b"\n", position)
    return len(raw) if found < 0 else found + 1


def _markers_cannot_matter(column: pa.ChunkedArray) -> bool:
    """Whether a column read without missing-value markers is the same as with them."""
    type_ = column.type
    if pa.types.is_integer(type_) or pa.types.is_boolean(type_):
        return True
    # A sum is one pass with no mask to allocate; it is NaN when any value is NaN (or when
    # inf meets -inf, and then the column is only read again needlessly).
    return pa.types.is_floating(type_) and not math.isnan(pc.sum(column).as_py() or 0.0)


def _read_excel(path: Path) -> pa.Table:
    try:
        import openpyxl
    except ImportError:
        raise TorchworkError(
            f"reading {path} needs openpyxl: pip install 'torchwork[excel]', or save it as CSV"
        ) from None
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        rows = [list(r) for r in book.worksheets[0].iter_rows(values_only=True)]
    finally:
        book.close()
    while rows and all(v is None for v in rows[-1]):
        rows.pop()
    if not rows:
        raise TorchworkError(f"{path} is empty: its first sheet needs a header row and data rows")
    header = [str(v) if v is not None else f"column{i + 1}" for i, v in enumerate(rows[0])]
    columns = {}
    for j, name in enumerate(header):
        values = [r[j] if j < len(r) else None for r in rows[1:]]
        values = [None if isinstance(v, str) and not v.strip() else v for v in values]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[name] = pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.table(columns)


def _read_numpy(path: Path) -> pa.Table:
    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.ndim != 2 or array.shape[1] < 2:
            raise TorchworkError(
                f"{path} must be a 2-D array of rows with the target in the last column "
                f"(got shape {array.shape})"
            )
        X, y = array[:, :-1], array[:, -1]
    else:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("X", "y") if k not in archive.files]
            if missing:
                raise TorchworkError(
                    f"{path} must hold arrays named X and y (it has {', '.join(archive.files) or 'none'})"
                )
            X, y = archive["X"], archive["y"]
        X = X.reshape(len(X), 1) if X.ndim == 1 else X
        y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
        if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
            raise TorchworkError(
                f"{path}: X must be [rows, features] and y [rows] with the same rows "
                f"(got {X.shape} and {y.shape})"
            )
    for name, a in (("X", X), ("y", y)):
        if a.dtype.kind not in "biufU":
            raise TorchworkError(f"{path}: {name} must hold numbers or text (got dtype {a.dtype})")
    columns = {f"x{i}": pa.array(X[:, i]) for i in range(X.shape[1])}
    columns["y"] = pa.array(y)
    return pa.table(columns)


def table_to_tensor(table: pa.Table, columns: Sequence[str]) -> torch.Tensor:
    """Numeric columns as one contiguous float32 tensor of shape [rows, len(columns)]."""
    # Row-major output from column-major input, one slab of rows at a time: each column's
    # rows of the slab are copied into a small cache-resident scratch block, which one
    # transposing copy writes out. The output is the only large allocation, made by torch:
    # numpy asks the kernel for huge pages, slow to fault in here (1M x 20 in a fresh
    # process: 0.2 s with two numpy arrays, 0.04 s this way). numpy releases the GIL while
    # copying, so large tables use a thread per core.
    rows, width = table.num_rows, len(columns)
    out = torch.empty((rows, width), dtype=torch.float32)
    target = out.numpy()
    step = max(1024, _SCRATCH_VALUES // max(width, 1))
    sources = []
    for name in columns:
        arrays = [
            (chunk.fill_null(np.nan) if chunk.null_count else chunk).to_numpy(zero_copy_only=False)
            for chunk in table.column(name).chunks
        ]
        sources.append((arrays, np.cumsum([0] + [len(a) for a in arrays]).tolist()))
    local = threading.local()

    def slab(first: int) -> None:
        last = min(first + step, rows)
        scratch = getattr(local, "scratch", None)
        if scratch is None:
            scratch = local.scratch = np.empty((width, step), dtype=np.float32)
        for j, (arrays, starts) in enumerate(sources):
            k = bisect.bisect_right(starts, first) - 1  # the chunk holding row `first`
            row = first
            while row < last:
                end = min(last, starts[k + 1])
                scratch[j, row - first : end - first] = arrays[k][row - starts[k] : end - starts[k]]
                row, k = end, k + 1
        target[first:last] = scratch[:, : last - first].T

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
    table: pa.Table, target: str, features: Sequence[str], source: str
) -> tuple[str, list[str]]:
    """The target column (default: the last) and feature columns (default: all others)."""
    names = table.column_names
    known = ", ".join(names)
    target = target or names[-1]
    if target not in names:
        raise TorchworkError(
            f"target column '{target}' is not in {source}; its columns are {known}"
        )
    if features:
        unknown = [f for f in features if f not in names]
        if unknown:
            raise TorchworkError(
                f"feature column{'s' if len(unknown) > 1 else ''} {', '.join(repr(u) for u in unknown)} "
                f"not in {source}; its columns are {known}"
            )
        if target in features:
            raise TorchworkError(f"'{target}' is the target: leave it out of --features")
        features = list(dict.fromkeys(features))
    else:
        features = [n for n in names if n != target]
    if not features:
        raise TorchworkError(
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
            raise TorchworkError(
                f"column '{name}' of {source} is empty in every row: fill it in or leave it out"
            )
        if not (is_numeric(type_) or is_text(type_)):
            raise TorchworkError(
                f"column '{name}' of {source} holds {type_} values, not numbers or text: "
                "convert it to numbers, or leave it out with --features"
            )
        if is_text(type_) and _check_mixed(column, name, source):
            # Numbers stored as text (an Excel column formatted as text, say): read as numbers.
            try:
                column = pc.cast(column, pa.float64())
            except pa.ArrowInvalid as e:
                raise TorchworkError(
                    f"column '{name}' of {source} holds text that is not a number: {e}"
                ) from None
            table = table.set_column(table.column_names.index(name), name, column)
            type_ = column.type
        col_missing = column.is_null().to_numpy(zero_copy_only=False)
        if pa.types.is_floating(type_):
            values = column.fill_null(0).to_numpy()
            col_missing = col_missing | np.isnan(values)
            infinite = np.isinf(values)
            if infinite.any():
                row, count = _first_row(infinite)
                raise TorchworkError(
                    f"column '{name}' of {source} has an infinite value in row {row}{_more(count)}: "
                    "replace it with a finite number"
                )
            huge = np.abs(values) > np.finfo(np.float32).max
            if huge.any():
                row, count = _first_row(huge)
                raise TorchworkError(
                    f"column '{name}' of {source} has a value too large for 32-bit floats in row "
                    f"{row}{_more(count)}: rescale the column"
                )
        if col_missing.any() and not dropna:
            row, count = _first_row(col_missing)
            raise TorchworkError(
                f"column '{name}' of {source} has an empty or NaN cell in row {row}{_more(count)}: "
                f"fill it in, or {fix}"
            )
        missing |= col_missing
    if missing.any():
        dropped = int(missing.sum())
        table = table.filter(pa.array(~missing))
        if log is not None:
            log(f"   --dropna: dropped {dropped} of {len(missing)} rows with empty or NaN cells")
        if table.num_rows == 0:
            raise TorchworkError(
                f"every row of {source} has an empty or NaN cell: nothing is left to learn from"
            )
    return table


def require_numbers(
    table: pa.Table, columns: Sequence[str], source: str, fix: str = "fix or remove those rows"
) -> pa.Table:
    """check_values, then refuse any column that does not hold numbers: for models that take
    the columns as they are, with no stored encoding."""
    table = check_values(table, columns, source, fix=fix)
    for name in columns:
        type_ = table.column(name).type
        if not is_numeric(type_):
            raise TorchworkError(
                f"column '{name}' of {source} is not numeric ({type_}): give numbers only"
            )
    return table


def _check_mixed(column: pa.ChunkedArray, name: str, source: str) -> bool:
    """True when a text column holds only numbers; an error when it holds mostly numbers."""
    # A column of numbers with a typo is read as text; say so instead of one-hot encoding it.
    distinct = [v for v in pc.unique(column).to_pylist() if v is not None]
    numeric = [v for v in distinct if _looks_numeric(v)]
    if numeric and len(numeric) == len(distinct):
        return True
    if numeric and len(numeric) * 2 >= len(distinct):
        bad = next(v for v in distinct if not _looks_numeric(v))
        mask = pc.equal(column, bad).fill_null(False).to_numpy(zero_copy_only=False)
        row, count = _first_row(mask)
        raise TorchworkError(
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


def detect_task(column: pa.ChunkedArray, requested: str, name: str, source: str) -> tuple[str, str]:
    """The task and a sentence saying why: two values are binary, a few integer or text labels
    multiclass, anything else regression."""
    distinct = [_plain(v) for v in pc.unique(column).to_pylist() if v is not None]
    count = len(distinct)
    type_ = column.type
    integral = is_numeric(type_) and all(
        float(v).is_integer() for v in distinct if not isinstance(v, bool)
    )
    if requested == "regression":
        if is_text(type_):
            raise TorchworkError(
                f"target '{name}' of {source} holds text, which cannot be regressed: use --task binary or multiclass"
            )
        return "regression", "asked for with --task"
    if requested in ("binary", "multiclass"):
        if count < 2:
            raise TorchworkError(
                f"target '{name}' of {source} has only one value: classification needs two or more"
            )
        if requested == "binary" and count != 2:
            raise TorchworkError(
                f"target '{name}' of {source} has {count} distinct values, not 2: use --task multiclass"
            )
        if count > MAX_CLASSES:
            raise TorchworkError(
                f"target '{name}' of {source} has {count} distinct values, too many classes (at most {MAX_CLASSES})"
            )
        return requested, "asked for with --task"
    if count < 2:
        raise TorchworkError(
            f"target '{name}' of {source} has the same value in every row: nothing to learn"
        )
    if count == 2:
        return "binary", f"target '{name}' has 2 distinct values"
    if is_text(type_):
        if count > MAX_CLASSES:
            raise TorchworkError(
                f"target '{name}' of {source} holds text with {count} distinct values, too many classes "
                f"(at most {MAX_CLASSES}); give a numeric target for regression"
            )
        return "multiclass", f"target '{name}' has {count} distinct text labels"
    if integral and count <= MAX_AUTO_INTEGER_CLASSES:
        return "multiclass", f"target '{name}' has {count} distinct whole-number labels"
    return "regression", f"target '{name}' is numeric with {count} distinct values"


@dataclass
class Feature:
    name: str
    kind: str  # "numeric" or "categorical"
    categories: list[Any] = field(default_factory=list)  # one-hot order, for categorical
    mean: float = 0.0  # standardization, fitted on the training rows (numeric only)
    std: float = 1.0


@dataclass
class TableEncoder:
    """Turns table rows into model inputs and model outputs back into predictions.

    Fitted once on the training rows (scaling) and the whole table (category and label
    names), then stored in the model file so prediction applies exactly the same encoding.
    """

    features: list[Feature]
    target: str
    task: str  # regression, binary or multiclass
    labels: list[Any] = field(default_factory=list)  # class labels, in output order
    target_mean: float = 0.0  # regression target standardization
    target_std: float = 1.0

    @classmethod
    def fit(
        cls,
        table: pa.Table,
        features: Sequence[str],
        target: str,
        task: str,
        train_rows: np.ndarray,
        source: str,
        categorical: str = "auto",
        scale: bool = True,
        scale_target: bool = True,
    ) -> TableEncoder:
        specs = []
        train = table.take(pa.array(train_rows))
        for name in features:
            column = table.column(name)
            if is_text(column.type):
                if categorical != "auto":
                    raise TorchworkError(
                        f"column '{name}' of {source} holds text: use --categorical auto to one-hot "
                        "encode it, or leave it out with --features"
                    )
                categories = _sorted_labels(
                    [v for v in pc.unique(column).to_pylist() if v is not None]
                )
                if len(categories) < 2:
                    raise TorchworkError(
                        f"column '{name}' of {source} has the same value ({categories[0]!r}) in every row: "
                        "it carries no information; leave it out with --features"
                    )
                specs.append(Feature(name, "categorical", categories))
                continue
            values = table_to_tensor(table, [name]).double()
            if float(values.max()) == float(values.min()):
                raise TorchworkError(
                    f"column '{name}' of {source} has the same value ({float(values[0]):g}) in every row: "
                    "it carries no information; leave it out with --features"
                )
            mean, std = 0.0, 1.0
            if scale:
                train_values = table_to_tensor(train, [name]).double()
                mean = float(train_values.mean())
                std = float(train_values.std(unbiased=False)) if len(train_values) > 1 else 0.0
                if not std > 0:
                    std = 1.0  # constant on the training rows: centre it, do not divide by zero
                mean, std = float(np.float32(mean)), float(np.float32(std))
            specs.append(Feature(name, "numeric", mean=mean, std=std))
        encoder = cls(specs, target, task)
        column = table.column(target)
        if task == "regression":
            if scale_target:
                y = table_to_tensor(train, [target]).double()
                std = float(y.std(unbiased=False)) if len(y) > 1 else 0.0
                encoder.target_mean = float(np.float32(float(y.mean())))
                encoder.target_std = float(np.float32(std)) if std > 0 else 1.0
        else:
            encoder.labels = _sorted_labels(
                [_plain(v) for v in pc.unique(column).to_pylist() if v is not None]
            )
        return encoder

    @property
    def input_names(self) -> list[str]:
        """The model's input columns: numeric features, then one column per category."""
        names = []
        for f in self.features:
            names += [f.name] if f.kind == "numeric" else [f"{f.name}={c}" for c in f.categories]
        return names

    @property
    def in_features(self) -> int:
        return len(self.input_names)

    @property
    def out_features(self) -> int:
        return len(self.labels) if self.task == "multiclass" else 1

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def transform(self, table: pa.Table, source: str = "the input") -> torch.Tensor:
        """Encode the feature columns of `table` as a float32 tensor [rows, in_features]."""
        missing = [n for n in self.feature_names if n not in table.column_names]
        if missing:
            raise TorchworkError(
                f"{source} lacks the model's feature column(s): {', '.join(missing)}"
            )
        parts = []
        for f in self.features:
            column = table.column(f.name)
            if f.kind == "numeric":
                if not is_numeric(column.type):
                    raise TorchworkError(
                        f"column '{f.name}' of {source} must hold numbers (it holds {column.type})"
                    )
                parts.append((table_to_tensor(table, [f.name]) - f.mean) / f.std)
            else:
                parts.append(self._one_hot(column, f, source))
        return torch.cat(parts, dim=1).contiguous() if len(parts) > 1 else parts[0].contiguous()

    def _one_hot(self, column: pa.ChunkedArray, f: Feature, source: str) -> torch.Tensor:
        values = column.cast(pa.string()) if not is_text(column.type) else column
        categories = pa.array([str(c) for c in f.categories], pa.string())
        found = pc.index_in(values, value_set=categories)
        unseen = found.is_null().to_numpy(zero_copy_only=False)
        if unseen.any():
            row, count = _first_row(unseen)
            value = column[row - 1].as_py()
            raise TorchworkError(
                f"column '{f.name}' of {source} has the category {value!r} in row {row}{_more(count)}, "
                f"which the model never saw; known categories: {', '.join(map(str, f.categories))}"
            )
        index = found.to_numpy(zero_copy_only=False)
        index = torch.from_numpy(index.astype(np.int64))
        return torch.nn.functional.one_hot(index, len(f.categories)).to(torch.float32)

    def encode_target(self, table: pa.Table, source: str = "the input") -> torch.Tensor:
        """The target as the loss function wants it: [rows, 1] float (scaled for regression,
        0/1 for binary), or [rows] class indices for multiclass."""
        if self.target not in table.column_names:
            raise TorchworkError(
                f"{source} has no target column '{self.target}': name it with --target"
            )
        column = table.column(self.target)
        if self.task == "regression":
            if not is_numeric(column.type):
                raise TorchworkError(
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
        position = {_label_key(label): i for i, label in enumerate(self.labels)}
        out = np.empty(len(column), dtype=np.int64)
        for i, value in enumerate(column.to_pylist()):
            key = _label_key(value)
            if key not in position:
                raise TorchworkError(
                    f"target '{self.target}' of {source} has the label {value!r} in row {i + 1}, which the "
                    f"model does not know; its labels are {', '.join(map(str, self.labels))}"
                )
            out[i] = position[key]
        return torch.from_numpy(out)

    def target_values(self, table: pa.Table) -> torch.Tensor:
        """The raw regression target as [rows, 1] float32."""
        return table_to_tensor(table, [self.target])

    def decode(self, outputs: torch.Tensor) -> dict[str, Any]:
        """Model outputs to predictions in the data's own terms.

        Regression: {"prediction": float32 tensor [rows]}. Classification: also the
        class probabilities [rows, classes] and the predicted class indices.
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
        return {
            "prediction": [self.labels[i] for i in index.tolist()],
            "index": index,
            "probabilities": probabilities,
        }

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
            raise TorchworkError(
                f"the stored preprocessing is incomplete or malformed: {e}"
            ) from None
        labels = raw.get("labels", [])
        if not isinstance(labels, list) or not all(
            isinstance(v, (str, int, float, bool)) for v in labels
        ):
            problem = "labels must be a list of names or numbers"
        else:
            problem = encoder._problem()
        if problem:
            raise TorchworkError(f"the stored preprocessing is malformed: {problem}")
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
                if f.categories or not all(
                    isinstance(v, (int, float)) and math.isfinite(v) for v in (f.mean, f.std)
                ):
                    return f"feature '{f.name}' needs a finite mean and std and no categories"
                if not f.std > 0:
                    return f"feature '{f.name}' has std {f.std}, not above 0"
            elif f.kind == "categorical":
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


def _label_key(value: Any) -> Any:
    # 1 and 1.0 and True name the same class in different file formats; text stays text.
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return value
