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

from torchwork import arrow
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
_CSV_PART_BYTES = 32 << 20  # at most this much of the file is one part


def _read_csv(path: Path, delimiter: str) -> pa.Table:
    """Read a CSV/TSV file as pyarrow's reader would with every missing-value marker ("",
    "NA", "null", ...) and empty text as missing, only faster and in less memory (see
    _read_csv_typed)."""
    import pyarrow.csv as pcsv

    raw = _map_file(path)
    data = pa.py_buffer(raw)
    # A quoted value may hold a newline: pyarrow must be told, or it cuts its blocks inside
    # such values and fails on (or misreads) a valid file larger than one block.
    quoted = _has_quote(raw, _row_end(raw, 0, quoted=True))
    parse = pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=quoted)
    try:
        table = _read_csv_typed(raw, data, parse)
    except pa.ArrowInvalid:
        table = None  # a late value that does not fit its column's type, or a bad row
    if table is not None:
        return table
    return _read_csv_buffer(data, parse, _with_markers())


def _with_markers(**options: Any) -> pcsv.ConvertOptions:
    import pyarrow.csv as pcsv

    # Empty text cells are missing values too, not empty-string categories.
    return pcsv.ConvertOptions(strings_can_be_null=True, **options)


def _read_csv_typed(raw: Any, data: pa.Buffer, parse: pcsv.ParseOptions) -> pa.Table | None:
    """The file read with the column types of its first block, in parts when it is large
    (_read_csv_parts); None where that cannot give pyarrow's own answer.

    Without missing-value markers pyarrow converts numbers about 15% faster: no cell is
    compared with "", "NA", "null", ... The first block decides: where every column in it
    comes out as integers, booleans or floats without NaN ("NaN" parses as a float), the
    markers cannot matter and the file is read without them; a column where they matter
    only later is read again with them. Otherwise the file is read with the markers. A
    late value that does not fit its column's type raises ArrowInvalid.
    """
    fast = _without_markers()
    head_end = _row_end(raw, _CSV_BLOCK, parse.newlines_in_values)
    head = _read_csv_buffer(data.slice(0, head_end), parse, fast, _serial())
    names = head.column_names
    if len(set(names)) < len(names):  # duplicate names: read_table reports them
        return None
    markers = not all(_markers_cannot_matter(column) for column in head.columns)
    if markers:
        head = _read_csv_buffer(data.slice(0, head_end), parse, _with_markers(), _serial())
    if head_end == data.size:
        return head
    types = dict(zip(names, head.schema.types, strict=True))
    convert = _with_markers if markers else _without_markers
    table = _read_csv_whole_or_parts(raw, data, parse, convert(column_types=types), names)
    again = [] if markers else [n for n in names if not _markers_cannot_matter(table.column(n))]
    if again:
        options = _with_markers(include_columns=again)
        reread = _read_csv_whole_or_parts(raw, data, parse, options, names)
        if reread.num_rows != table.num_rows:
            return None
        for name in again:
            table = table.set_column(names.index(name), name, reread.column(name))
    return table


def _without_markers(**options: Any) -> pcsv.ConvertOptions:
    import pyarrow.csv as pcsv

    return pcsv.ConvertOptions(null_values=[], quoted_strings_can_be_null=False, **options)


def _read_csv_whole_or_parts(
    raw: Any,
    data: pa.Buffer,
    parse: pcsv.ParseOptions,
    convert: pcsv.ConvertOptions,
    names: list[str],
) -> pa.Table:
    if pa.cpu_count() > 1 and data.size >= _CSV_SPLIT_BYTES:
        return _read_csv_parts(raw, data, parse, convert, names)
    return _read_csv_buffer(data, parse, convert)


def _read_csv_parts(
    raw: Any,
    data: pa.Buffer,
    parse: pcsv.ParseOptions,
    convert: pcsv.ConvertOptions,
    names: list[str],
) -> pa.Table:
    """A CSV cut at row ends into parts of at most _CSV_PART_BYTES, each read by a serial
    reader on one of a thread per core, with fixed column types (a row that does not fit
    them raises ArrowInvalid). In a file with quotes a cut is made only where the quotes
    before it are balanced, never inside a quoted value (which may hold a newline).

    Memory stays near the table's own size: pyarrow's threaded reader holds much more of
    the file parsed at once (for 1M x 20, 218 MB, its peak was 636 MB against 385 MB this
    way), and each part's pages of the mapped file are let go once it is read. Faulting in
    less fresh memory also makes a fresh process's read about 10% faster.
    """
    import pyarrow.csv as pcsv

    size, cores = data.size, pa.cpu_count()
    parts = cores * -(-size // (_CSV_PART_BYTES * cores))  # a whole number of rounds
    quoted = parse.newlines_in_values
    cuts = [_row_end(raw, 0, quoted=True)]  # the first part starts with the header
    for k in range(1, parts):
        cut = _row_end(raw, max(cuts[-1], size * k // parts), quoted, cuts[-1])
        if cut < size:
            cuts.append(cut)
    cuts[0] = 0
    spans = list(zip(cuts, [*cuts[1:], size], strict=True))

    def part(span: tuple[int, int]) -> pa.Table:
        start, end = span
        read = _serial() if start == 0 else pcsv.ReadOptions(use_threads=False, column_names=names)
        table = _read_csv_buffer(data.slice(start, end - start), parse, convert, read)
        _release(raw, start, end)
        return table

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(pa.cpu_count(), len(spans))) as pool:
        return pa.concat_tables(list(pool.map(part, spans)))


def _has_quote(raw: Any, start: int) -> bool:
    """Whether raw holds a quote character after start, looked for part by part so that
    the pages of a mapped file seen so far are let go (_release)."""
    for first in range(start, len(raw), _CSV_PART_BYTES):
        last = min(first + _CSV_PART_BYTES, len(raw))
        found = raw.find(b'"', first, last) >= 0
        _release(raw, first, last)
        if found:
            return True
    return False


def _release(raw: Any, start: int, end: int) -> None:
    """Let the pages of a mapped file's byte range go (they stay in the page cache, and
    are mapped again if read again): the process's memory does not grow with the file."""
    import mmap

    if isinstance(raw, mmap.mmap):
        first = start - start % mmap.PAGESIZE
        raw.madvise(mmap.MADV_DONTNEED, first, end - first)


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


def _row_end(raw: Any, position: int, quoted: bool, start: int = 0) -> int:
    """The offset just after the first newline at or after position that ends a row: with
    quotes, one with an even number of quote characters between start (a row's start) and
    it. A doubled quote inside a quoted value counts twice, so the parity holds."""
    end = _line_end(raw, position)
    if quoted:
        view = np.frombuffer(raw, dtype=np.uint8)
        while end < len(raw) and np.count_nonzero(view[start:end] == ord('"')) % 2:
            end = _line_end(raw, end)
    return end


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


def _write_rows(rows: int, columns: Sequence[Any]) -> torch.Tensor:
    """Input columns, each written by its writer, as one contiguous float32 tensor [rows, width].

    Row-major output from column-major input, one slab of rows at a time: each writer puts
    its columns' rows of the slab into a small cache-resident scratch block, which one
    transposing copy writes out. The output is the only large allocation, made by torch:
    numpy asks the kernel for huge pages, slow to fault in here (1M x 20 in a fresh
    process: 0.2 s with two numpy arrays, 0.04 s this way). numpy releases the GIL while
    copying, so large tables use a thread per core.
    """
    width = sum(c.width for c in columns)
    out = torch.empty((rows, width), dtype=torch.float32)
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
        table = table.filter(arrow.from_numpy(~missing))
        if log is not None:
            log(f"   --dropna: dropped {dropped} of {len(missing)} rows with empty or NaN cells")
        if table.num_rows == 0:
            raise TorchworkError(
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
    count = pc.count_distinct(column).as_py()
    type_ = column.type
    # The values themselves only matter for a few of them (classes); a numeric target
    # often has as many distinct values as rows.
    distinct = (
        [_plain(v) for v in pc.unique(column).to_pylist() if v is not None]
        if count <= MAX_CLASSES
        else []
    )
    integral = (
        count <= MAX_CLASSES
        and is_numeric(type_)
        and all(float(v).is_integer() for v in distinct if not isinstance(v, bool))
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
        train = np.asarray(train_rows)
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
            values = _float32_values(column)
            if values.max() == values.min():
                raise TorchworkError(
                    f"column '{name}' of {source} has the same value ({float(values[0]):g}) in every row: "
                    "it carries no information; leave it out with --features"
                )
            mean, std = 0.0, 1.0
            if scale:
                mean, std = _train_mean_std(values, train)
            specs.append(Feature(name, "numeric", mean=mean, std=std))
        encoder = cls(specs, target, task)
        column = table.column(target)
        if task == "regression":
            if scale_target:
                encoder.target_mean, encoder.target_std = _train_mean_std(
                    _float32_values(column), train
                )
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

    def transform(
        self, table: pa.Table, source: str = "the input", scaled: bool = True
    ) -> torch.Tensor:
        """Encode the feature columns of `table` as a float32 tensor [rows, in_features]:
        numeric columns standardized (as they are with `scaled=False`), text columns one
        input per category. Every row is written once, straight into the result."""
        missing = [n for n in self.feature_names if n not in table.column_names]
        if missing:
            raise TorchworkError(
                f"{source} lacks the model's feature column(s): {', '.join(missing)}"
            )
        writers: list[Any] = []
        for f in self.features:
            column = table.column(f.name)
            if f.kind == "numeric":
                if not is_numeric(column.type):
                    raise TorchworkError(
                        f"column '{f.name}' of {source} must hold numbers (it holds {column.type})"
                    )
                writers.append(
                    _NumericColumn(column, f.mean, f.std) if scaled else _NumericColumn(column)
                )
            else:
                writers.append(_OneHotColumn(self._codes(column, f, source), len(f.categories)))
        return _write_rows(table.num_rows, writers)

    def _codes(self, column: pa.ChunkedArray, f: Feature, source: str) -> np.ndarray:
        """Each row's position in the feature's categories; an unseen category is an error."""
        values = column.cast(pa.string()) if not is_text(column.type) else column
        categories = arrow.from_values([str(c) for c in f.categories])
        found = pc.index_in(values, value_set=categories)
        if found.null_count:
            unseen = np.isnan(arrow.float_values(found))
            row, count = _first_row(unseen)
            value = column[row - 1].as_py()
            raise TorchworkError(
                f"column '{f.name}' of {source} has the category {value!r} in row {row}{_more(count)}, "
                f"which the model never saw; known categories: {', '.join(map(str, f.categories))}"
            )
        return _integers(found)

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
        """Each row's class index; a label the model does not know is an error."""
        found = self._label_positions(column)
        if found is not None and not found.null_count:
            return torch.from_numpy(_integers(found).astype(np.int64))
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

    def _label_positions(self, column: pa.ChunkedArray) -> pa.ChunkedArray | None:
        """Label positions found by Arrow when the column and the labels are both numbers
        (1, 1.0 and True are one class, as _label_key has it) or both text; else None, and
        the caller compares row by row."""
        numbers = all(isinstance(v, (bool, int, float)) for v in self.labels)
        if numbers and is_numeric(column.type):
            keys = arrow.from_numpy(np.array([float(v) for v in self.labels]))
            return pc.index_in(column.cast(pa.float64()), value_set=keys)
        if is_text(column.type) and all(isinstance(v, str) for v in self.labels):
            return pc.index_in(column.cast(pa.string()), value_set=arrow.from_values(self.labels))
        return None

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


def _float32_values(column: pa.ChunkedArray) -> np.ndarray:
    """A numeric column as float32 values, as the model sees them."""
    return arrow.float_values(column, np.float32)


def _integers(column: pa.ChunkedArray) -> np.ndarray:
    """An integer column without nulls as one array."""
    parts = [arrow.to_numpy(chunk) for chunk in column.chunks]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _train_mean_std(values: np.ndarray, train_rows: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the training rows' values, in float64, each rounded
    to float32 as stored; a std of 0 (constant on the training rows) becomes 1: centre the
    column, do not divide by zero."""
    train = values[train_rows].astype(np.float64)
    mean = float(train.mean())
    std = float(train.std()) if len(train) > 1 else 0.0
    return float(np.float32(mean)), float(np.float32(std)) if std > 0 else 1.0


def _label_key(value: Any) -> Any:
    # 1 and 1.0 and True name the same class in different file formats; text stays text.
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return value
