"""Check a table before training: the columns to use, values that are not numbers, and the
task its target asks for. Every problem a user can fix is one DataError that names the file,
the column and, where it helps, the row (data rows count from 1, after the header).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from torchwork.errors import DataError
from torchwork.registry import Task
from torchwork.tables import arrow

MAX_CLASSES = 100  # more distinct labels than this is not a classification target
MAX_AUTO_INTEGER_CLASSES = 10  # integer targets with at most this many values are classes


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


def first_row(mask: np.ndarray) -> tuple[int, int]:
    """(first 1-based row where mask is true, how many rows in all)."""
    rows = np.flatnonzero(mask)
    return int(rows[0]) + 1, len(rows)


def more(count: int) -> str:
    return f" (and {count - 1} more row{'s' if count > 2 else ''})" if count > 1 else ""


def list_names(names: Sequence[str], quote: bool = False, shown: int = 20) -> str:
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
    known = list_names(names)
    target = target or names[-1]
    if target not in names:
        raise DataError(f"target column '{target}' is not in {source}; its columns are {known}")
    for flag, given in (("--features", features), ("--exclude", exclude)):
        unknown = [f for f in given if f not in names]
        if unknown:
            raise DataError(
                f"{flag}: column{'s' if len(unknown) > 1 else ''} {list_names(unknown, quote=True)} "
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
    fix: str | None = None,
    keep: Collection[str] = (),
) -> pa.Table:
    """check_table's table: the checked columns, any rows with empty cells dropped."""
    return check_table(table, columns, source, dropna, log, fix, keep=keep).table


@dataclass
class Checked:
    """check_table's answer: the table, and what it found missing."""

    table: pa.Table
    dropped: dict[str, Any] | None = None  # what --dropna dropped (see check_table)
    missing: dict[str, int] = field(default_factory=dict)  # kept column -> its empty cells
    no_target: int = 0  # rows left out because their target cell was empty


def check_table(
    table: pa.Table,
    columns: Sequence[str],
    source: str,
    dropna: bool = False,
    log: Callable[[str], None] | None = None,
    fix: str | None = None,
    target: str = "",
    keep: Collection[str] = (),
) -> Checked:
    """Refuse (or with dropna, drop) rows with empty or NaN cells, naming every column that
    has them, with counts, in one line; refuse infinite values. Without dropna, the empty
    cells of the columns `keep` names are kept (their kinds take them), counted in
    `missing` (a column empty in every row too), and the rows whose `target` is empty are
    left out of the table, said through `log`.

    Text in a column that is otherwise numbers is an error naming the values and rows. `fix`
    is what a user does about such cells; None: a run's flags (--na-values for the text,
    --dropna, --exclude for mostly empty columns other than the `target`). Returns the table
    (numbers written as text read as numbers, dropped rows gone) and what --dropna dropped:
    {"rows": dropped, "of": rows before, "columns": {column: its empty cells}, "warned": more
    than DROPPED_WARNING of them}, or None.
    """
    kept = set() if dropna else set(keep) - {target}
    holes: dict[str, np.ndarray] = {}  # column -> True at its rows with an empty or NaN cell
    odd: list[tuple[str, list[str], np.ndarray]] = []  # number columns that hold some text
    for name in columns:
        column = table.column(name)
        type_ = column.type
        if pa.types.is_null(type_):
            if name in kept:  # left out by the caller, which says so
                holes[name] = np.ones(table.num_rows, bool)
                continue
            raise DataError(
                f"column '{name}' of {source} is empty in every row: fill it in or leave it out"
            )
        if not (is_numeric(type_) or is_text(type_) or is_date(type_) or pa.types.is_binary(type_)):
            raise DataError(
                f"column '{name}' of {source} holds {type_} values, not numbers, text or dates: "
                "convert it to numbers, or leave it out with --features"
            )
        distinct = arrow.unique(column) if is_text(type_) else []
        texts = _texts_among_numbers(distinct) if is_text(type_) else None
        if texts == []:
            # Numbers stored as text (an Excel column formatted as text, say): read as numbers.
            try:
                column = arrow.cast(column, pa.float64())
            except pa.ArrowInvalid as e:
                raise DataError(
                    f"column '{name}' of {source} holds text that is not a number: {e}"
                ) from None
            table = table.set_column(table.column_names.index(name), name, column)
            type_ = column.type
        elif texts:
            named = arrow.is_in(column, arrow.from_values(texts))
            odd.append((name, texts, arrow.float_values(named, np.float32) == 1))
        elif is_text(type_) and log is not None:
            _point_out_formatted_numbers(distinct, name, source, log)
        if _all_present_and_finite(column):
            continue
        col_missing = empty_cells(column)
        if pa.types.is_floating(type_):
            values = arrow.float_values(column, np.float64)
            col_missing = col_missing | np.isnan(values)
            infinite = np.isinf(values)
            if infinite.any():
                row, count = first_row(infinite)
                raise DataError(
                    f"column '{name}' of {source} has an infinite value in row {row}{more(count)}: "
                    "replace it with a finite number"
                )
            huge = np.abs(values) > np.finfo(np.float32).max
            if huge.any():
                row, count = first_row(huge)
                raise DataError(
                    f"column '{name}' of {source} has a value too large for 32-bit floats in row "
                    f"{row}{more(count)}: rescale the column"
                )
        if col_missing.any():
            holes[name] = col_missing
    if odd:
        raise DataError(_texts_message(odd, holes, source, dropna, fix))
    if not dropna and target in holes and holes.keys() - {target} <= kept:
        table, no_target = _without_target(table, holes.pop(target), target, source, log)
        holes = {name: rows[~np.asarray(no_target)] for name, rows in holes.items()}
        return Checked(table, missing=_cells(holes), no_target=int(np.sum(no_target)))
    if not dropna and holes.keys() <= kept:
        return Checked(table, missing=_cells(holes))
    if not holes:
        return Checked(table)
    total = table.num_rows
    missing = np.logical_or.reduce(list(holes.values()))
    dropped, cells = int(missing.sum()), _cells(holes)
    if not dropna:
        raise DataError(_holes_message(holes, source, dropped, total, fix, target))
    table = table.filter(arrow.from_numpy(~missing))
    if table.num_rows == 0:
        raise DataError(
            f"every row of {source} has an empty or NaN cell (in {_counted(cells)}): nothing is "
            "left to learn from; fill them in"
            + _exclude_hint(cells, total, target, " or leave out the emptiest columns with")
        )
    if log is not None:
        log(
            f"   --dropna: dropped {dropped:,} of {total:,} rows ({dropped / total:.0%}) with "
            f"empty or NaN cells, in {_counted(cells)}"
        )
        if dropped > DROPPED_WARNING * total:  # as "warned" below
            log(
                f"   Warning: --dropna dropped {dropped / total:.0%} of the rows of {source}: the "
                f"model learns from and is tested on the {table.num_rows:,} left, which may not be "
                "like the others; fill in the cells"
                + _exclude_hint(cells, total, target, ", or leave out the emptiest columns with")
            )
    warned = dropped > DROPPED_WARNING * total  # the pages warn as the run did
    return Checked(table, {"rows": dropped, "of": total, "columns": cells, "warned": warned})


def _cells(holes: dict[str, np.ndarray]) -> dict[str, int]:
    """The empty cells of each column that has any."""
    return {name: int(rows.sum()) for name, rows in holes.items() if rows.any()}


def _without_target(
    table: pa.Table,
    empty: np.ndarray,
    target: str,
    source: str,
    log: Callable[[str], None] | None,
) -> tuple[pa.Table, np.ndarray]:
    """The rows whose target is given: those without one cannot be learned from or scored."""
    left = table.num_rows - int(empty.sum())
    if left == 0:
        raise DataError(
            f"the target '{target}' of {source} is empty in every row: give it, or name "
            "another column with --target"
        )
    if log is not None:
        log(
            f"   Left out {int(empty.sum()):,} of {table.num_rows:,} rows whose target "
            f"'{target}' is empty: they cannot be learned from or scored"
        )
    return table.filter(arrow.from_numpy(~empty)), empty


DROPPED_WARNING = 0.1  # --dropna dropping more than this share of the rows is warned about
SUGGESTED_TEXTS = 5  # at most this many texts in number columns are offered for --na-values


def is_date(type_: pa.DataType) -> bool:
    """Dates and times: what a CSV's ISO dates are read as, and Parquet's and Excel's dates."""
    return pa.types.is_date(type_) or pa.types.is_timestamp(type_)


def empty_cells(column: pa.ChunkedArray) -> np.ndarray:
    """True at each empty (null) cell of a column."""
    return np.concatenate(
        [np.zeros(len(c), bool) if (p := arrow.validity(c)) is None else ~p for c in column.chunks]
        or [np.zeros(0, bool)]
    )


def _by_count(cells: dict[str, int]) -> list[str]:
    """Column names, most cells first (ties in table order)."""
    return sorted(cells, key=lambda name: -cells[name])


def _counted(cells: dict[str, int], shown: int = 20) -> str:
    """ "'a' (400), 'b' (42)": columns and their empty cells, the most first."""
    names = _by_count(cells)
    listed = ", ".join(f"'{name}' ({cells[name]:,})" for name in names[:shown])
    return listed + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _exclude_hint(cells: dict[str, int], total: int, target: str, words: str) -> str:
    """--exclude for the columns (not the target) whose empty cells alone would drop more
    than DROPPED_WARNING of the rows, or ""."""
    emptiest = [n for n in _by_count(cells) if n != target and cells[n] > DROPPED_WARNING * total]
    if not emptiest:
        return ""
    return f"{words} --exclude {_shell(','.join(emptiest))}"


def _shell(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _holes_message(
    holes: dict[str, np.ndarray],
    source: str,
    rows: int,
    total: int,
    fix: str | None,
    target: str,
) -> str:
    """Every column with empty or NaN cells, in one line, and what to do about them."""
    if len(holes) == 1:
        ((name, mask),) = holes.items()
        row, count = first_row(mask)
        return (
            f"column '{name}' of {source} has an empty or NaN cell in row {row}{more(count)}: "
            f"fill it in, or {fix or 'add --dropna to drop such rows'}"
        )
    cells = {name: int(mask.sum()) for name, mask in holes.items()}
    firsts = {name: first_row(mask)[0] for name, mask in holes.items()}
    shown = _by_count(cells)
    listed = ", ".join(
        f"'{n}' in {cells[n]:,} row{'s' if cells[n] > 1 else ''} "
        f"({'the first ' if cells[n] > 1 else ''}row {firsts[n]})"
        for n in shown[:20]
    )
    listed += f" and {len(shown) - 20} more" if len(shown) > 20 else ""
    if fix is None:
        emptiest = _exclude_hint(cells, total, target, ", or leave out the emptiest columns with")
        fix = f"add --dropna to drop the {rows:,} of {total:,} rows that have any{emptiest}"
    return (
        f"{source} has empty or NaN cells in {len(holes)} columns: {listed}: fill them in, or {fix}"
    )


def _texts_message(
    odd: list[tuple[str, list[str], np.ndarray]],
    holes: dict[str, np.ndarray],
    source: str,
    dropna: bool,
    fix: str | None,
) -> str:
    """The number columns that hold some text, in one line (with the columns that have
    empty cells), and what to do: a run's --na-values where the texts may mean missing."""
    parts = []
    for name, texts, rows in odd:
        row, count = first_row(rows)
        values = ", ".join(repr(t) for t in texts[:SUGGESTED_TEXTS])
        values += (
            f" and {len(texts) - SUGGESTED_TEXTS} more" if len(texts) > SUGGESTED_TEXTS else ""
        )
        what = "a non-numeric value" if len(texts) == 1 else "non-numeric values"
        parts.append(f"column '{name}' of {source} has {what} {values} in row {row}{more(count)}")
    others = {n: int(m.sum()) for n, m in holes.items() if n not in {o[0] for o in odd}}
    message = "; ".join(parts)
    if others:
        message += f"; and empty or NaN cells are in {_counted(others)}"
    one = len(odd) == 1 and len(odd[0][1]) == 1
    if fix is not None:
        return f"{message}: {'it' if len(odd) == 1 else 'they'} should hold numbers; {fix}"
    texts = list(dict.fromkeys(t for _, found, _ in odd for t in found))
    message += f": {'it' if len(odd) == 1 else 'they'} should hold numbers"
    if len(texts) > SUGGESTED_TEXTS or any(
        "," in t or not t.strip() or not t.isprintable() for t in texts
    ):
        return message + "; fix or remove those values"
    drop = (
        "(--dropna then drops those rows)"
        if dropna
        else "(the run then keeps them as empty cells, or drops those rows with --dropna)"
    )
    return (
        f"{message}; if {'it means' if one else 'these mean'} a missing value, add --na-values "
        f"{_shell(','.join(texts))} {drop}, else fix or remove "
        f"{'that value' if one else 'those values'}"
    )


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


def _texts_among_numbers(distinct: list[str]) -> list[str] | None:
    """A text column's (of these distinct values) texts that are not numbers, when at least
    half of its values are numbers (a column of numbers with a typo, or "unknown" for a
    missing value, is read as text): [] when all are numbers; None when it is text."""
    numeric = [v for v in distinct if _looks_numeric(v)]
    if not numeric or len(numeric) * 2 < len(distinct):
        return None
    return [v for v in distinct if not _looks_numeric(v)]


def sorted_labels(values: list[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def plain(value: Any) -> Any:
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
    distinct = [plain(v) for v in arrow.unique(column)] if count <= MAX_CLASSES else []
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
