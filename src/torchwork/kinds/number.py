"""Numbers: a column of numbers is one model input, standardized with its mean and standard
deviation over the training rows. Every number column of a table is one block: one float32
tensor [rows, columns], written in one pass over the table (tables.convert.write_rows)."""

from __future__ import annotations

import math
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
from torchwork.tables import arrow
from torchwork.tables.check import is_numeric
from torchwork.tables.convert import NumericColumn, write_rows

FLOAT32_MAX = 3.4028234663852886e38


@dataclass
class NumberBlock(Block):
    """The number columns, with each one's standardization (mean 0 and std 1: none)."""

    kind = "number"
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    # Each number's value for an empty cell, its mean over the training rows (none: a model
    # file from before empty cells were taken, which refuses them)...
    fill: list[float] = field(default_factory=list)
    # ...and which numbers were empty in training rows: each gets one more input, 1 where
    # the cell was empty, after the numbers
    missing: list[bool] = field(default_factory=list)

    @property
    def scaled(self) -> bool:
        return any(m != 0.0 for m in self.mean) or any(s != 1.0 for s in self.std)

    @property
    def indicators(self) -> list[int]:
        """The numbers (by position) that have an input saying their cell was empty."""
        return [i for i, m in enumerate(self.missing) if m]

    def takes_missing(self, column: str) -> bool:
        return bool(self.fill)

    def add_number(
        self, values: np.ndarray, train: TrainingRows, scale: bool, empty_input: bool
    ) -> None:
        """One more number, fitted on the training rows of `values` (NaN where empty): its
        standardization (with `scale`), its fill (the training mean) and whether it has an
        input saying its cell was empty."""
        mean, std = train.mean_std(values)
        self.mean.append(mean if scale else 0.0)
        self.std.append(std if scale else 1.0)
        self.fill.append(mean)
        self.missing.append(empty_input)

    def imputed(self, x: torch.Tensor) -> torch.Tensor:
        """Standardized numbers [rows, numbers] (NaN where a cell was empty) with each empty
        cell its fill, standardized, and the indicators after them: the model's inputs."""
        if not self.fill:
            return x
        empty = torch.isnan(x)
        if empty.any():
            x = torch.where(empty, self._standard_fill(), x)
        if not self.indicators:
            return x
        return torch.cat([x, empty[:, self.indicators].to(x.dtype)], dim=1)

    def _standard_fill(self) -> torch.Tensor:
        """The fills standardized, in float32 as the numbers are."""
        fill = np.asarray(self.fill, dtype=np.float32)
        if self.scaled:
            fill = (fill - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return torch.from_numpy(np.ascontiguousarray(fill, dtype=np.float32))

    def encode(
        self,
        table: pa.Table,
        where: Source,
        decoded: dict[str, Any] | None = None,
        order: np.ndarray | None = None,
        scaled: bool = True,
    ) -> torch.Tensor:
        writers = []
        for name, mean, std in zip(self.columns, self.mean, self.std, strict=True):
            column = table.column(name)
            if not is_numeric(column.type):
                raise DataError(
                    f"column '{name}' of {where.name} must hold numbers (it holds {column.type})"
                )
            writers.append(NumericColumn(column, mean, std) if scaled else NumericColumn(column))
        x = write_rows(table.num_rows, writers, order)
        return self.imputed(x) if scaled else x  # raw: the graph fills empty cells itself

    def raw(
        self, table: pa.Table, where: Source, decoded: dict[str, Any] | None = None
    ) -> torch.Tensor:
        return self.encode(table, where, scaled=False)  # the graph standardizes them

    def example(self, rows: int, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(rows, len(self.mean), generator=generator)  # a number each
        return torch.tensor(self.mean) + torch.tensor(self.std) * noise

    def graph_layer(self) -> nn.Module | None:
        if self.fill:
            return Impute(self.mean, self.std, self._standard_fill().tolist(), self.indicators)
        return Standardize(self.mean, self.std) if self.scaled else None

    def from_json(self, column: str, values: list[Any], where: Source) -> pa.Array:
        """JSON numbers; None, NaN and infinities stay for check_values to name. true and
        false are refused as "3" is: neither is a number, and reading them as 1 and 0 would
        hide a client's mixed-up columns."""
        out: list[float | None] = []
        for i, value in enumerate(values):
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                out.append(value)
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DataError(
                    f"column '{column}' of {where.name} must hold numbers; row {i + 1} has "
                    f"{short(value)}"
                )
            if abs(value) > FLOAT32_MAX:
                raise DataError(
                    f"column '{column}' of {where.name} has a number too large for the model in "
                    f"row {i + 1}: it computes in 32-bit floats, at most about 3.4e38"
                )
            out.append(float(value))
        return pa.array(out, pa.float64())

    def standardization(self) -> tuple[list[float], list[float]]:
        return list(self.mean), list(self.std)

    def linear_inputs(self, x: torch.Tensor) -> torch.Tensor | None:
        return x

    def spec(self) -> dict[str, Any]:
        spec = {"kind": self.kind, "columns": len(self.columns)}
        return spec | ({"indicators": len(self.indicators)} if self.indicators else {})

    def input_names(self) -> list[str]:
        names = self.number_names()
        return names + [f"{names[i]} (empty)" for i in self.indicators]

    def number_names(self) -> list[str]:
        """The numbers' names, one a number (a column's, for numbers)."""
        return list(self.columns)

    def column_part(self, column: str) -> tuple[Any, ...]:
        """The column's numbers and the input that says its cell was empty, if any."""
        numbers = self.numbers_of(column)
        inputs = [
            *numbers,
            *(len(self.mean) + self.indicators.index(i) for i in numbers if i in self.indicators),
        ]
        return (slice(None), inputs)

    def numbers_of(self, column: str) -> list[int]:
        """The positions of a column's numbers (one, for numbers)."""
        return [self.columns.index(column)]

    def describe(self) -> str:
        how = " (standardized on the training rows)" if self.scaled else ""
        return f"{len(self.columns)} number column(s){how}: {_names(self.columns)}"

    def untested(self) -> str:
        return f"values of {_names(self.columns, 4)} outside the training rows' ranges"

    def export_input(self) -> dict[str, Any]:
        return {
            "name": "X",
            "dtype": "float32",
            "shape": ["batch", len(self.columns)],
            "columns": list(self.columns),
            "how": "the number columns in this order, in their own units: the graph "
            + ("standardizes them" if self.scaled else "takes them as they are")
            + (
                "; an empty cell is NaN, which the graph fills in as training did"
                if self.fill
                else ""
            ),
        }

    def to_dict(self) -> dict[str, Any]:
        stored = {"kind": self.kind, "columns": self.columns, "mean": self.mean, "std": self.std}
        if self.fill:
            stored |= {"fill": self.fill, "missing": self.missing}
        return stored


def finite_numbers(values: Any, count: int) -> bool:
    """Whether a stored value is a list of `count` finite numbers (no booleans), as a block
    stores its means, standard deviations and fills."""
    return (
        isinstance(values, list)
        and len(values) == count
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in values
        )
    )


def read_missing(raw: dict[str, Any], numbers: int, kind: str) -> tuple[list[float], list[bool]]:
    """A stored block's fills and empty-cell inputs, checked ([], [] for a model file from
    before empty cells were taken)."""
    fill, missing = raw.get("fill"), raw.get("missing")
    if fill is None and missing is None:
        return [], []
    if not finite_numbers(fill, numbers):
        raise malformed(f"the {kind} columns need a finite fill for each of their numbers")
    if not (
        isinstance(missing, list)
        and len(missing) == numbers
        and all(isinstance(v, bool) for v in missing)
    ):
        raise malformed(f"the {kind} columns need true or false for each number's empty cells")
    return [float(v) for v in fill], list(missing)


class Impute(nn.Module):
    """Standardize, then each empty (NaN) number its fill, and an input 1 where each of the
    `indicators` was empty: NumberBlock.imputed, inside an exported graph."""

    def __init__(
        self, mean: list[float], std: list[float], fill: list[float], indicators: list[int]
    ) -> None:
        super().__init__()
        self.standardize = Standardize(mean, std)
        self.register_buffer("fill", torch.tensor(fill, dtype=torch.float32))
        self.register_buffer("indicators", torch.tensor(indicators, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        empty = torch.isnan(x)
        z = torch.where(empty, self.fill, self.standardize(x))
        if not len(self.indicators):
            return z
        return torch.cat([z, empty.index_select(1, self.indicators).to(z.dtype)], dim=1)


class Standardize(nn.Module):
    """(x - mean) / std per column, in float32, as NumericColumn computes it."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Numbers(nn.Module):
    """A number block's layer: the standardized numbers are the features themselves."""

    adds = False

    def __init__(self, columns: int) -> None:
        super().__init__()
        self.features_out = columns

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class NumberKind(Kind):
    name = "number"
    takes_missing = True  # each empty cell its column's training mean, and an input saying so

    def accepts(self, column: pa.ChunkedArray) -> str | None:
        return None if is_numeric(column.type) else f"holds {column.type} values, not numbers"

    def recognise(self, column: pa.ChunkedArray, name: str, where: Source) -> str | None:
        return "numbers" if is_numeric(column.type) else None

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
        block = NumberBlock()
        training = train.mask()
        for name in columns:
            values = arrow.float_values(table.column(name), np.float32)  # NaN where empty
            empty = np.isnan(values)
            given = values[~empty]
            if not len(given) or (given.max() == given.min() and not empty.any()):
                why = (EMPTY, "") if not len(given) else (SAME, f"{float(given[0]):g}")
                left_out.append((name, *why))
                continue
            block.columns.append(name)
            block.add_number(values, train, options.scale, bool(empty[training].any()))
        return [block] if block.columns else []

    def from_dict(self, raw: dict[str, Any]) -> Block:
        columns, mean, std = raw.get("columns"), raw.get("mean"), raw.get("std")
        if not (isinstance(columns, list) and columns and all(isinstance(c, str) for c in columns)):
            raise malformed("a number block needs its column names")
        for name, values in (("mean", mean), ("std", std)):
            if not finite_numbers(values, len(columns)):
                raise malformed(f"the number columns need a finite {name} each")
        for name, value in zip(columns, std, strict=True):
            if not value > 0:
                raise malformed(f"number column '{name}' has std {value}, not above 0")
        fill, missing = read_missing(raw, len(columns), "number")
        return NumberBlock(
            list(columns), [float(v) for v in mean], [float(v) for v in std], fill, missing
        )

    def layer(self, spec: dict[str, Any], width: int) -> nn.Module:
        return Numbers(int(spec["columns"]) + int(spec.get("indicators", 0)))

    def spec_words(self, spec: dict[str, Any]) -> str:
        n = spec["columns"]
        return f"{n} number column{'s' if n != 1 else ''}"

    def check_spec(self, spec: dict[str, Any]) -> str:
        n, k = spec.get("columns"), spec.get("indicators", 0)
        ok = isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_COLUMNS
        if not ok:
            return f"a number block of {n!r:.40} columns"
        ok = isinstance(k, int) and not isinstance(k, bool) and 0 <= k <= n
        return "" if ok else f"a number block of {k!r:.40} inputs for empty cells"


MAX_COLUMNS = 1_000_000  # a guard against hostile model files, far above any table's width

KIND = NumberKind()


def _names(names: list[str], shown: int = 8) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
