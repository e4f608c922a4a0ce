"""Reading tables: CSV and TSV, Parquet, Excel and NumPy files into pyarrow tables.

This module does not import torch, so that `torchwork run` can start reading its table
(`prefetch`) while torch itself is still being imported.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from torchwork.errors import DataError, TorchworkError
from torchwork.fileio import in_background
from torchwork.tables import arrow

if TYPE_CHECKING:
    import pyarrow.csv as pcsv

DELIMITERS = (",", ";", "\t", "|")  # what delimiter "auto" chooses from
_SNIFF_LINES = 20  # the first lines the delimiter is found from


@dataclass(frozen=True)
class CsvFormat:
    """How a table's cells are written (a CSV/TSV file's delimiter, decimal mark and
    encoding; in every format, the texts that mean a missing value); the defaults read what
    most files are."""

    delimiter: str = "auto"  # auto: found from the first lines (sniff_delimiter)
    decimal: str = "."
    encoding: str = "utf-8"
    na_values: tuple[str, ...] = ()  # more cell texts that mean missing (--na-values): "?"

    @property
    def utf8(self) -> bool:
        return self.encoding.replace("_", "-").lower() in ("utf-8", "utf8")

    @classmethod
    def of(cls, data: Any) -> CsvFormat:
        """The format a run's data config (DataConfig) names."""
        return cls(data.delimiter, data.decimal, data.encoding, tuple(data.na_values))


_PREFETCHED: dict[tuple[Path, CsvFormat], Future] = {}
_PREFETCH_LOCK = threading.Lock()


def prefetch(path: str | Path, csv: CsvFormat = CsvFormat()) -> None:
    """Start reading `path` on a thread; the next `read_table` of it takes the result.

    pyarrow reads on its own threads, outside Python's lock, so the read goes on while
    the caller imports torch (a second or more), and what the user waits for is shorter
    by the reading time. Errors are raised by that `read_table`, as if it had read.
    """
    key = (Path(path).resolve(), csv)
    with _PREFETCH_LOCK:
        if key not in _PREFETCHED:
            _PREFETCHED[key] = in_background(_read_table, Path(path), csv)


def read_table(path: str | Path, csv: CsvFormat = CsvFormat()) -> pa.Table:
    """Read a .csv/.tsv, .parquet, .xlsx, .npy (rows, target last) or .npz (X and y) file.

    Column names are stripped of surrounding spaces (` x1 , y ` names x1 and y). Empty cells
    are missing values, and so are text cells that `csv.na_values` names (in a CSV also
    the usual markers: NA, null, NaN, ...).
    """
    with _PREFETCH_LOCK:
        started = _PREFETCHED.pop((Path(path).resolve(), csv), None)
    if started is not None:
        return started.result()
    return _read_table(Path(path), csv)


def give_back_memory() -> None:
    """Hand freed memory back to the system (glibc's malloc_trim; nothing elsewhere).

    pyarrow's readers allocate and free many blocks on their threads, and glibc keeps what
    is freed for later: after reading 2,000,000 rows (a 346 MB table) the process held
    150 MB more than the table, and it still held the table's memory after the table was
    gone. Trimming gives both back, so that peak memory stays near the data's own size.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _malloc_trim() -> Any:
    global _TRIM
    if _TRIM is False:
        import ctypes
        import ctypes.util

        try:
            _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc
            _TRIM = None
    return _TRIM


_TRIM: Any = False


def _read_table(path: Path, csv: CsvFormat) -> pa.Table:
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    if path.is_dir():
        raise DataError(f"{path} is a folder: give a data file")
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise DataError(f"cannot read {path}: use a {', '.join(READERS)} file")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty: it needs a header row and data rows")
    try:
        table = READERS[suffix](path, csv)
        names = table.column_names  # decodes the header, which may not be valid UTF-8
    except TorchworkError:
        raise
    except UnicodeDecodeError as e:
        raise DataError(_not_utf8(path, csv, e.start)) from None
    except (pa.ArrowException, OSError, ValueError, KeyError, EOFError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot read {path} as {suffix[1:]}: {reason}") from None
    except Exception as e:  # zip and Excel readers raise their own error types
        raise DataError(f"cannot read {path} as {suffix[1:]}: {type(e).__name__}: {e}") from None
    if table.num_columns == 0:
        raise DataError(f"{path} has no columns")
    if table.num_rows == 0:
        raise DataError(f"{path} has a header but no data rows")
    if suffix in HEADER_SUFFIXES:
        stripped = [name.strip() for name in names]
        if stripped != names:
            table = table.rename_columns(stripped)
            names = stripped
    if suffix in (".csv", ".tsv"):  # pyarrow reads text it cannot decode as binary
        binary = [
            n for n, t in zip(names, table.schema.types, strict=True) if pa.types.is_binary(t)
        ]
        if binary:
            raise DataError(_not_utf8(path, csv, column=binary[0]))
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"{path} has duplicate column names: {', '.join(duplicates)}")
    if csv.na_values and suffix not in (".csv", ".tsv", ".xlsx"):  # those read them as missing
        table = _missing_texts(table, csv.na_values)
    return table


def _missing_texts(table: pa.Table, na_values: tuple[str, ...]) -> pa.Table:
    """The table with every text cell that `na_values` names made missing (null)."""
    value_set = arrow.from_values(list(na_values))
    for j, column in enumerate(table.columns):
        type_ = column.type
        if pa.types.is_dictionary(type_) and pa.types.is_string(type_.value_type):
            column, type_ = arrow.cast(column, pa.string()), pa.string()
        if not (pa.types.is_string(type_) or pa.types.is_large_string(type_)):
            continue
        named = arrow.is_in(column, value_set)
        if arrow.compute("any", named).as_py():
            column = arrow.compute("if_else", named, pa.scalar(None, type_), column)
            table = table.set_column(j, table.column_names[j], column)
    return table


def _not_utf8(path: Path, csv: CsvFormat, position: int | None = None, column: str = "") -> str:
    where = (
        f" (column '{column}')" if column else f" (byte {position})" if position is not None else ""
    )
    if not csv.utf8:
        return f"cannot read {path} as {csv.encoding} text{where}: give its --encoding"
    return (
        f"cannot read {path}: it is not UTF-8 text{where}; give its --encoding "
        "(for example latin-1 or cp1252), or save it as UTF-8"
    )


def sniff_delimiter(head: bytes, default: str) -> str:
    """The field separator of a CSV whose first lines are `head`: of , ; tab |, the one
    found as often in every line as in the header (outside quotes), the default first,
    then the most frequent; the default when none is."""
    lines = head.split(b"\n")
    if len(lines) > 1:
        lines = lines[:-1]  # the last may be cut short
    lines = [_unquoted(line.rstrip(b"\r")) for line in lines[:_SNIFF_LINES] if line.strip()]
    if not lines:
        return default
    fits = []
    for delimiter in DELIMITERS:
        mark = delimiter.encode()
        count = lines[0].count(mark)
        if count and all(line.count(mark) == count for line in lines[1:]):
            fits.append((delimiter != default, -count, delimiter))
    return min(fits)[2] if fits else default


def _unquoted(line: bytes) -> bytes:
    """A line without its quoted values (a delimiter inside quotes does not count)."""
    parts = line.split(b'"')
    return b"".join(parts[::2])


_CSV_BLOCK = 1 << 20  # pyarrow's default block; it infers column types from the first one
_CSV_SPLIT_BYTES = 16 << 20  # unquoted files at least this large are read in parts
_CSV_PART_BYTES = 32 << 20  # at most this much of the file is one part
_CSV_PART_BLOCK = 8 << 20  # the block a part is read in


def _read_csv(path: Path, default_delimiter: str, csv: CsvFormat) -> pa.Table:
    """Read a CSV/TSV file as pyarrow's reader would with every missing-value marker ("",
    "NA", "null", ..., and the format's na_values) and empty text as missing, only faster
    and in less memory (see _read_csv_typed)."""
    raw = _utf8_bytes(path, csv)
    data = pa.py_buffer(raw)
    parse = _parse_options(raw, default_delimiter, csv)
    decimal = {"decimal_point": csv.decimal}
    try:
        table = _read_csv_typed(raw, data, parse, decimal, csv.na_values)
    except pa.ArrowInvalid:
        table = None  # a late value that does not fit its column's type, or a bad row
    if table is not None:
        return table
    return _read_csv_buffer(data, parse, _with_markers(csv.na_values, **decimal))


def _utf8_bytes(path: Path, csv: CsvFormat) -> Any:
    """A CSV file's bytes as UTF-8: mapped, or decoded from its --encoding."""
    raw = _map_file(path)
    if not csv.utf8:
        # Decoded whole, here, so that a bad byte is reported as one, and the rest of the
        # reader sees UTF-8 as always (pyarrow's own transcoding reads in one thread).
        try:
            raw = bytes(raw).decode(csv.encoding).encode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(_not_utf8(path, csv, e.start)) from None
    return raw


def _parse_options(raw: Any, default_delimiter: str, csv: CsvFormat) -> pcsv.ParseOptions:
    import pyarrow.csv as pcsv

    delimiter = _delimiter(raw, default_delimiter, csv)
    # A quoted value may hold a newline: pyarrow must be told, or it cuts its blocks inside
    # such values and fails on (or misreads) a valid file larger than one block.
    quoted = _has_quote(raw, _row_end(raw, 0, quoted=True))
    return pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=quoted)


def read_text(path: str | Path, csv: CsvFormat = CsvFormat()) -> pa.Table | None:
    """A CSV or TSV file's cells as the text they are written with, every column as
    strings, nothing missing, the column names as read_table gives them: rows written
    back as they came (`True` stays `True`, `1.50` stays `1.50`). None for other formats,
    whose cells are typed by the file itself."""
    import pyarrow.csv as pcsv

    path = Path(path)
    default = {".csv": ",", ".tsv": "\t"}.get(path.suffix.lower())
    if default is None:
        return None
    raw = _utf8_bytes(path, csv)
    data, parse = pa.py_buffer(raw), _parse_options(raw, default, csv)
    header = data.slice(0, _row_end(raw, 0, quoted=True))
    names = _read_csv_buffer(header, parse, pcsv.ConvertOptions()).column_names
    as_written = pcsv.ConvertOptions(
        column_types={name: pa.string() for name in names},
        null_values=[],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    table = _read_csv_buffer(data, parse, as_written)
    return table.rename_columns([name.strip() for name in names])


def _delimiter(raw: Any, default: str, csv: CsvFormat) -> str:
    """The field separator: the one named, or found in the first 64 KB (sniff_delimiter)."""
    if csv.delimiter != "auto":
        return csv.delimiter
    return sniff_delimiter(bytes(raw[: _row_end(raw, 64 << 10, quoted=False)]), default)


def csv_delimiter(path: str | Path, csv: CsvFormat = CsvFormat()) -> str:
    """The field separator read_table reads a .csv or .tsv file with (for `eject`)."""
    path = Path(path)
    raw = _map_file(path)
    if not csv.utf8:
        raw = bytes(raw).decode(csv.encoding, errors="replace").encode("utf-8")
    return _delimiter(raw, "\t" if path.suffix.lower() == ".tsv" else ",", csv)


def _with_markers(na_values: tuple[str, ...] = (), **options: Any) -> pcsv.ConvertOptions:
    import pyarrow.csv as pcsv

    # Empty text cells are missing values too, not empty-string categories.
    convert = pcsv.ConvertOptions(strings_can_be_null=True, **options)
    if na_values:
        convert.null_values = [*convert.null_values, *na_values]
    return convert


def _read_csv_typed(
    raw: Any,
    data: pa.Buffer,
    parse: pcsv.ParseOptions,
    decimal: dict[str, str],
    na_values: tuple[str, ...] = (),
) -> pa.Table | None:
    """The file read with the column types of its first block, in parts when it is large
    (_read_csv_parts); None where that cannot give pyarrow's own answer.

    Without missing-value markers pyarrow converts numbers about 15% faster: no cell is
    compared with "", "NA", "null", ... The first block decides: where every column in it
    comes out as integers, booleans or floats without NaN ("NaN" parses as a float), the
    markers cannot matter and the file is read without them; a column where they matter
    only later is read again with them. Otherwise the file is read with the markers, and
    always with `na_values` (--na-values -999 may name a number). A late value that does not
    fit its column's type raises ArrowInvalid.
    """
    fast = _without_markers(**decimal)
    head_end = _row_end(raw, _CSV_BLOCK, parse.newlines_in_values)
    head = _read_csv_buffer(data.slice(0, head_end), parse, fast, _serial())
    names = head.column_names
    if len(set(names)) < len(names):  # duplicate names: read_table reports them
        return None
    markers = bool(na_values) or not all(_markers_cannot_matter(c) for c in head.columns)
    with_markers = _with_markers(na_values, **decimal)
    if markers:
        head = _read_csv_buffer(data.slice(0, head_end), parse, with_markers, _serial())
    if head_end == data.size:
        return head
    types = dict(zip(names, head.schema.types, strict=True))
    convert = _without_markers(column_types=types, **decimal)
    if markers:
        convert = _with_markers(na_values, column_types=types, **decimal)
    table = _read_csv_whole_or_parts(raw, data, parse, convert, names)
    again = [] if markers else [n for n in names if not _markers_cannot_matter(table.column(n))]
    if again:
        options = _with_markers(include_columns=again, **decimal)
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
        # Large blocks: each is one chunk of every column, and every chunk costs its
        # reader something later (the types are given, so no block is inferred from).
        read = pcsv.ReadOptions(
            use_threads=False,
            block_size=_CSV_PART_BLOCK,
            column_names=None if start == 0 else names,
        )
        table = _read_csv_buffer(data.slice(start, end - start), parse, convert, read)
        _release(raw, start, end)
        return table

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(pa.cpu_count(), len(spans))) as pool:
        table = pa.concat_tables(list(pool.map(part, spans)))
    give_back_memory()  # the parts' parsing buffers
    return table


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
    return pa.types.is_floating(type_) and not any(
        math.isnan(float(np.sum(arrow.to_numpy(chunk)))) for chunk in column.chunks if len(chunk)
    )


def _read_excel(path: Path, na_values: tuple[str, ...] = ()) -> pa.Table:
    try:
        import openpyxl
    except ImportError:
        raise DataError(
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
        raise DataError(f"{path} is empty: its first sheet needs a header row and data rows")
    header = [str(v) if v is not None else f"column{i + 1}" for i, v in enumerate(rows[0])]
    missing = {"", *(v.strip() for v in na_values)}  # cells that mean a missing value
    columns = {}
    for j, name in enumerate(header):
        values = [r[j] if j < len(r) else None for r in rows[1:]]
        values = [None if isinstance(v, str) and v.strip() in missing else v for v in values]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[name] = pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.table(columns)


def _read_numpy(path: Path) -> pa.Table:
    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.ndim != 2 or array.shape[1] < 2:
            raise DataError(
                f"{path} must be a 2-D array of rows with the target in the last column "
                f"(got shape {array.shape})"
            )
        X, y = array[:, :-1], array[:, -1]
    else:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("X", "y") if k not in archive.files]
            if missing:
                raise DataError(
                    f"{path} must hold arrays named X and y (it has {', '.join(archive.files) or 'none'})"
                )
            X, y = archive["X"], archive["y"]
        X = X.reshape(len(X), 1) if X.ndim == 1 else X
        y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
        if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
            raise DataError(
                f"{path}: X must be [rows, features] and y [rows] with the same rows "
                f"(got {X.shape} and {y.shape})"
            )
    for name, a in (("X", X), ("y", y)):
        if a.dtype.kind not in "biufU":
            raise DataError(f"{path}: {name} must hold numbers or text (got dtype {a.dtype})")
    columns = {f"x{i}": pa.array(X[:, i]) for i in range(X.shape[1])}
    columns["y"] = pa.array(y)
    return pa.table(columns)


def _read_parquet(path: Path, csv: CsvFormat) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.read_table(path)


# The readers by suffix, the one list of the file types a table can be: a new type is one line.
READERS: dict[str, Callable[[Path, CsvFormat], pa.Table]] = {
    ".csv": lambda path, csv: _read_csv(path, ",", csv),
    ".tsv": lambda path, csv: _read_csv(path, "\t", csv),
    ".parquet": _read_parquet,
    ".pq": _read_parquet,
    ".xlsx": lambda path, csv: _read_excel(path, csv.na_values),
    ".npy": lambda path, csv: _read_numpy(path),
    ".npz": lambda path, csv: _read_numpy(path),
}
HEADER_SUFFIXES = (".csv", ".tsv", ".xlsx")  # types whose column names are typed by people
