"""Dates: a column of dates or times is five numbers a row that a model can use: the year, the
month (1 to 12), the day of the week (0 Monday to 6 Sunday), the day of the month, and the
days since the column's earliest date in the training rows (a time of day as a fraction of a
day), each standardized with its mean and standard deviation over the training rows.

A column holds dates when it is read as dates or times (a CSV's ISO dates, Parquet's and
Excel's dates), or when it is text whose every value is an ISO 8601 date, or date and time
(`2024-03-01`, `2024-03-01T09:30:00`, `2024-03-01 09:30:00+02:00`): the same dates are the
same numbers whatever the file. A time with a time zone counts in UTC. Every date column of
a table is one block: one float32 tensor [rows, 5 x columns]. An exported graph takes the
five numbers of each column (the file beside it says how to make them) and standardizes
them itself, as it does numbers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from torchwork.errors import DataError
from torchwork.kinds.base import (
    EMPTY,
    SAME,
    Block,
    Kind,
    Source,
    TrainingRows,
    malformed,
    short,
)
from torchwork.kinds.number import (
    MAX_COLUMNS,
    NumberBlock,
    Numbers,
    finite_numbers,
    read_missing,
)
from torchwork.tables import arrow
from torchwork.tables.check import is_date, is_text

PARTS = ("year", "month", "day_of_week", "day_of_month", "days")  # a column's numbers, in order
WORDS = (
    "year, month, day of the week (0 Monday), day of the month and days since the earliest "
    "training date"
)
RECOGNISED_FROM = 1000  # a text column's first values that must all look like ISO dates
# ISO 8601 as Arrow reads it: a date, then maybe a time (hours, minutes, seconds, a fraction)
# and a time zone (Z, or an offset from UTC)
ISO = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?")
ISO_DAY = re.compile(r"-?\d{4,}-\d{2}-\d{2}")  # a date as a model file stores it
# What text is parsed as, in turn: without a time zone, then with one (read in UTC); in
# microseconds (years 1 to 9999), then nanoseconds (a finer fraction of a second)
TEXT_TYPES = (
    pa.timestamp("us"),
    pa.timestamp("us", "UTC"),
    pa.timestamp("ns"),
    pa.timestamp("ns", "UTC"),
)
TICKS_A_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}
FORMAT = "ISO 8601 text: 2024-03-01, or 2024-03-01T09:30:00"  # what predict and serve take


def days_since_1970(column: pa.ChunkedArray, name: str, where: Source) -> np.ndarray:
    """Each row's date as days since 1970-01-01 (float64: a time of day as a fraction of a
    day, a time with a time zone in UTC), NaN where a cell is empty. Text that is not an ISO
    date is one line naming the row."""
    if is_text(column.type):
        column = _parsed(column, name, where)
    type_ = column.type
    if pa.types.is_date32(type_):
        return arrow.float_values(arrow.cast(column, pa.int32()), np.float64)
    if pa.types.is_date64(type_):
        return arrow.float_values(arrow.cast(column, pa.int64()), np.float64) / 86_400_000
    if pa.types.is_timestamp(type_):
        ticks = arrow.float_values(arrow.cast(column, pa.int64()), np.float64)
        return ticks / TICKS_A_DAY[type_.unit]
    raise DataError(f"column '{name}' of {where.name} must hold dates (it holds {type_})")


def parts_of(days: np.ndarray, origin: int) -> np.ndarray:
    """The PARTS of dates given as days since 1970-01-01: [rows, 5] float64, NaN in the
    rows of NaN days; `origin`, the day (since 1970-01-01) the last part counts from."""
    empty = np.isnan(days)
    whole = np.floor(np.where(empty, 0.0, days)).astype(np.int64)
    day = whole.astype("datetime64[D]")
    month = day.astype("datetime64[M]")
    out = np.empty((len(days), len(PARTS)), dtype=np.float64)
    out[:, 0] = day.astype("datetime64[Y]").astype(np.int64) + 1970
    out[:, 1] = month.astype(np.int64) % 12 + 1
    out[:, 2] = (whole + 3) % 7  # 1970-01-01 was a Thursday, and Monday is 0
    out[:, 3] = (day - month.astype("datetime64[D]")).astype(np.int64) + 1
    out[:, 4] = days - origin
    out[empty] = np.nan
    return out


def iso_day(day: int) -> str:
    """A day (since 1970-01-01) as ISO text: 2024-03-01."""
    return str(np.datetime64(int(day), "D"))


def day_number(text: str) -> int:
    """An ISO date (2024-03-01) as days since 1970-01-01."""
    return int(np.datetime64(text, "D").astype(np.int64))


@dataclass
class DateBlock(NumberBlock):
    """The date columns: each one's first training date (`origin`, which its days count
    from) and last; the block of numbers of their five numbers each, with its
    standardization (mean 0 and std 1: none), as the number block's."""

    kind = "date"
    origin: list[str] = field(default_factory=list)  # ISO dates, one a column
    last: list[str] = field(default_factory=list)

    def numbers(self, table: pa.Table, where: Source) -> np.ndarray:
        """The PARTS of every column, unstandardized: float32 [rows, 5 x columns]."""
        out = np.empty((table.num_rows, len(PARTS) * len(self.columns)), dtype=np.float32)
        for j, (name, origin) in enumerate(zip(self.columns, self.origin, strict=True)):
            days = days_since_1970(table.column(name), name, where)
            out[:, len(PARTS) * j : len(PARTS) * (j + 1)] = parts_of(days, day_number(origin))
        return out

    def encode(
        self,
        table: pa.Table,
        where: Source,
        decoded: dict[str, Any] | None = None,
        order: np.ndarray | None = None,
        scaled: bool = True,
    ) -> torch.Tensor:
        values = self.numbers(table, where)
        x = torch.from_numpy(np.ascontiguousarray(values if order is None else values[order]))
        if not scaled:
            return x  # raw: the graph standardizes them and fills empty cells
        if self.scaled:
            # float32, in the order the exported graph's Standardize computes it
            mean = torch.tensor(self.mean, dtype=torch.float32)
            x = (x - mean) / torch.tensor(self.std, dtype=torch.float32)
        return self.imputed(x)

    def from_json(self, column: str, values: list[Any], where: Source) -> pa.Array:
        """ISO dates as text, each checked; None stays for check_values to name."""
        for i, value in enumerate(values):
            if value is not None and not isinstance(value, str):
                raise DataError(
                    f"column '{column}' of {where.name} must hold dates as {FORMAT}; row "
                    f"{i + 1} has {short(value)}"
                )
        array = pa.array(values, pa.string())
        days_since_1970(pa.chunked_array([array]), column, where)
        return array

    def number_names(self) -> list[str]:
        return [f"{name}.{part}" for name in self.columns for part in PARTS]

    def input_names(self) -> list[str]:
        # a column's one empty-cell input is its first number's (a date is all or nothing)
        empty = [f"{self.columns[i // len(PARTS)]} (empty)" for i in self.indicators]
        return self.number_names() + empty

    def numbers_of(self, column: str) -> list[int]:
        j = self.columns.index(column)
        return list(range(len(PARTS) * j, len(PARTS) * (j + 1)))

    def describe(self) -> str:
        how = ", standardized on the training rows" if self.scaled else ""
        return f"{len(self.columns)} date column(s) as {WORDS}{how}: {self._ranges()}"

    def untested(self) -> str:
        return f"dates outside the training rows' ranges: {self._ranges(4)}"

    def _ranges(self, shown: int = 8) -> str:
        spans = zip(self.columns, self.origin, self.last, strict=True)
        named = [f"{name} ({first} to {last})" for name, first, last in spans]
        more = f" and {len(named) - shown} more" if len(named) > shown else ""
        return ", ".join(named[:shown]) + more

    def describe_input(self) -> dict[str, Any]:
        return {"input": "date", "format": FORMAT}

    def export_input(self) -> dict[str, Any]:
        return {
            "name": "dates",
            "dtype": "float32",
            "shape": ["batch", len(PARTS) * len(self.columns)],
            "columns": list(self.columns),
            "inputs": self.input_names(),
            "origin": dict(zip(self.columns, self.origin, strict=True)),
            "how": f"each date column, in this order, as {len(PARTS)} numbers: its year, month "
            "(1 to 12), day of the week (0 Monday to 6 Sunday), day of the month (1 to 31), "
            "and days since that column's 'origin' date (a time of day as a fraction of a "
            "day; a time with a time zone in UTC): the graph "
            + ("standardizes them" if self.scaled else "takes them as they are")
            + (
                "; an empty cell is 5 NaN, which the graph fills in as training did"
                if self.fill
                else ""
            ),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "columns": self.columns,
            "origin": self.origin,
            "last": self.last,
            "mean": self.mean,
            "std": self.std,
        } | ({"fill": self.fill, "missing": self.missing} if self.fill else {})


class DateKind(Kind):
    name = "date"
    takes_missing = True  # an empty cell: each number its training mean, and an input saying so

    def recognise(self, column: pa.ChunkedArray, name: str, where: Source) -> str | None:
        if is_date(column.type):
            return "dates and times" if pa.types.is_timestamp(column.type) else "dates"
        if not is_text(column.type):
            return None
        sample = [v for v in column.slice(0, RECOGNISED_FROM).to_pylist() if v is not None]
        if not sample or not all(ISO.fullmatch(v) for v in sample):
            return None
        if _timestamps(column) is None:
            return None
        times = any(len(v) > len("2024-03-01") for v in sample)
        return f"ISO {'dates and times' if times else 'dates'} as text"

    def accepts(self, column: pa.ChunkedArray) -> str | None:
        if is_date(column.type):
            return None
        if not is_text(column.type):
            return f"holds {column.type} values, not dates"
        if _timestamps(column) is not None:
            return None
        row, value = _first_bad(column) or (0, None)
        return f"holds text that is not a date ({short(value)} in row {row}; dates: {FORMAT})"

    def fit(
        self,
        table: pa.Table,
        columns: list[str],
        train: TrainingRows,
        options: Any,
        where: Source,
        left_out: list[tuple[str, str, str]],
        decoded: dict[str, Any],
    ) -> list[Block]:
        block = DateBlock()
        training = train.mask()
        for name in columns:
            days = days_since_1970(table.column(name), name, where)
            empty = np.isnan(days)
            given = days[training & ~empty]
            if not len(given) or (np.nanmax(days) == np.nanmin(days) and not empty.any()):
                why = (EMPTY, "") if not len(given) else (SAME, iso_day(math.floor(given[0])))
                left_out.append((name, *why))
                continue
            first, last = np.floor(given.min()), np.floor(given.max())
            parts = parts_of(days, int(first))
            for k in range(len(PARTS)):  # one input for an empty date: its first number's
                empty_input = k == 0 and bool(empty[training].any())
                block.add_number(parts[:, k], train, options.scale, empty_input)
            block.columns.append(name)
            block.origin.append(iso_day(int(first)))
            block.last.append(iso_day(int(last)))
        if not block.columns:
            return []
        since = ", ".join(
            f"'{n}' from {o}" for n, o in zip(block.columns, block.origin, strict=True)
        )
        where.say(f"   Dates {since}: each as {WORDS}")
        return [block]

    def from_dict(self, raw: dict[str, Any]) -> Block:
        columns = raw.get("columns")
        if not (isinstance(columns, list) and columns and all(isinstance(c, str) for c in columns)):
            raise malformed("a date block needs its column names")
        for key in ("origin", "last"):
            days = raw.get(key)
            if not (
                isinstance(days, list)
                and len(days) == len(columns)
                and all(isinstance(d, str) and ISO_DAY.fullmatch(d) for d in days)
            ):
                raise malformed(f"the date columns need an ISO date each as their {key}")
            try:
                [day_number(d) for d in days]
            except ValueError:
                raise malformed(f"a date column's {key} is not a date") from None
        for key in ("mean", "std"):
            if not finite_numbers(raw.get(key), len(PARTS) * len(columns)):
                raise malformed(f"the date columns need a finite {key} for each of their numbers")
        if not all(v > 0 for v in raw["std"]):
            raise malformed("a date column's std is not above 0")
        fill, missing = read_missing(raw, len(PARTS) * len(columns), "date")
        return DateBlock(
            list(columns),
            [float(v) for v in raw["mean"]],
            [float(v) for v in raw["std"]],
            fill,
            missing,
            list(raw["origin"]),
            list(raw["last"]),
        )

    def layer(self, spec: dict[str, Any], width: int) -> nn.Module:
        # the numbers are the features, then the inputs that say a cell was empty
        return Numbers(len(PARTS) * int(spec["columns"]) + int(spec.get("indicators", 0)))

    def spec_words(self, spec: dict[str, Any]) -> str:
        n = spec["columns"]
        return f"{n} date column{'s' if n != 1 else ''}"

    def check_spec(self, spec: dict[str, Any]) -> str:
        n, k = spec.get("columns"), spec.get("indicators", 0)
        ok = isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_COLUMNS
        if not ok:
            return f"a date block of {n!r:.40} columns"
        ok = isinstance(k, int) and not isinstance(k, bool) and 0 <= k <= n
        return "" if ok else f"a date block of {k!r:.40} inputs for empty cells"


KIND = DateKind()


def _timestamps(column: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """A text column's ISO dates and times as timestamps: read by Arrow as one of
    TEXT_TYPES (the first that reads every value), or one by one where some have a time
    zone and others not; None when a value is not a date."""
    if pa.types.is_dictionary(column.type):
        column = arrow.cast(column, pa.string())
    for type_ in TEXT_TYPES:
        try:
            return arrow.cast(column, type_)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return None if _first_bad(column) is not None else _one_by_one(column)


def _one_by_one(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """ISO dates, some with a time zone and some without, each as Python reads it (those
    with a zone in UTC), as microseconds: slower than Arrow, which reads them one way."""
    from datetime import UTC, datetime

    times = []
    for value in column.to_pylist():
        time = datetime.fromisoformat(value) if value is not None else None
        if time is not None and time.tzinfo is not None:
            time = time.astimezone(UTC).replace(tzinfo=None)
        times.append(time)
    return pa.chunked_array([pa.array(times, pa.timestamp("us"))])


def _parsed(column: pa.ChunkedArray, name: str, where: Source) -> pa.ChunkedArray:
    """_timestamps, or one line naming the first value that is not a date."""
    found = _timestamps(column)
    if found is not None:
        return found
    row, value = _first_bad(column) or (0, None)
    raise DataError(
        f"column '{name}' of {where.name} has {short(value)} in row {row}, which is not a date: "
        f"write dates as {FORMAT}"
    )


def _first_bad(column: pa.ChunkedArray) -> tuple[int, Any] | None:
    """(1-based row, value) of the first value of a text column that is not an ISO date (as
    ISO and Python read it), or None when each is one."""
    from datetime import datetime

    for row, value in enumerate(column.to_pylist()):
        if value is None:
            continue
        if not (isinstance(value, str) and ISO.fullmatch(value)):
            return row + 1, value
        try:
            datetime.fromisoformat(value)
        except ValueError:  # 2024-02-30
            return row + 1, value
    return None
