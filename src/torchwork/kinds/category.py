"""Categories: a column of a few distinct values (text such as "red", "green") is one integer a
row, the value's place in the column's categories (sorted, found on the whole table).

The model does not one-hot encode them: a category's weights in the model's first layer are
one row of an embedding as wide as that layer (the number of outputs for a linear model,
the first hidden layer's width for an MLP), which is the same function as a one-hot input
times those weights, without a column per category. Every category column of a table is
one block: an int64 tensor [rows, columns]."""

from __future__ import annotations

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
    per_column,
    short,
)
from torchwork.tables import arrow
from torchwork.tables.check import (
    empty_cells,
    first_row,
    is_text,
    list_names,
    more,
    sorted_labels,
)

MANY_CATEGORIES = 100  # a column with more is pointed out, with the ways to cap it
ID_SHARE = 0.5  # ...and one with a different value in at least this share of rows looks like an ID
MAX_CATEGORIES = 10_000_000  # a guard against hostile model files
IDS = (
    "text column(s) with a different value in every row, as IDs have (name them in --features "
    "to keep them)"
)


@dataclass
class CategoryBlock(Block):
    """The category columns: each one's categories in code order, and whether it has one
    more code for every category not listed (--max-categories, and any seen later)."""

    kind = "category"
    categories: list[list[Any]] = field(default_factory=list)
    other: list[bool] = field(default_factory=list)

    @property
    def sizes(self) -> list[int]:
        """How many codes each column has."""
        return [len(c) + o for c, o in zip(self.categories, self.other, strict=True)]

    def encode(
        self,
        table: pa.Table,
        where: Source,
        decoded: dict[str, Any] | None = None,
        order: np.ndarray | None = None,
    ) -> torch.Tensor:
        rows = table.num_rows if order is None else len(order)
        codes = np.empty((rows, len(self.columns)), dtype=np.int64)
        for j, name in enumerate(self.columns):
            column = self.codes(table.column(name), j, where)
            codes[:, j] = column if order is None else column[order]
        return torch.from_numpy(codes)

    def codes(self, column: pa.ChunkedArray, j: int, where: Source) -> np.ndarray:
        """Each row's code in column j's categories, an empty cell the code of the category
        None (last) where the column had empty cells; an unseen category (or an empty cell
        where there were none) is an error, or with `other`, the code after them."""
        name, categories = self.columns[j], self.categories[j]
        known = categories[:-1] if categories and categories[-1] is None else categories
        found = category_codes(column, known)
        if not found.null_count:
            return integers(found)
        values = arrow.float_values(found, np.float64)
        if known is not categories:
            values[empty_cells(column)] = len(known)
        unseen = np.isnan(values)
        if unseen.any() and self.other[j]:
            values[unseen] = len(categories)
        elif unseen.any():
            row, count = first_row(unseen)
            value = column[row - 1].as_py()
            if value is None:
                raise DataError(
                    f"column '{name}' of {where.name} has an empty cell in row {row}"
                    f"{more(count)}, and the model never saw one empty: fill it in"
                )
            raise DataError(
                f"column '{name}' of {where.name} has the category {value!r} in row {row}"
                f"{more(count)}, which the model never saw; known categories: "
                f"{list_names([str(c) for c in known])}"
            )
        return values.astype(np.int64)

    def from_json(self, column: str, values: list[Any], where: Source) -> pa.Array:
        """A text column of a request; an empty cell is refused here, as check_values
        refuses one, and the codes name any category the model never saw."""
        j = self.columns.index(column)
        for i, value in enumerate(values):
            if value is None:
                continue  # its code says whether the model takes an empty cell
            if not isinstance(value, str):
                raise DataError(
                    f"column '{column}' of {where.name} must hold text, one of "
                    f"{', '.join(map(str, self.categories[j]))}; row {i + 1} has {short(value)}"
                )
        return pa.array(values, pa.string())

    def takes_missing(self, column: str) -> bool:
        return True  # the codes take an empty cell where training had them, or say why not

    def example(self, rows: int, generator: torch.Generator) -> torch.Tensor:
        return torch.stack(
            [torch.randint(size, (rows,), generator=generator) for size in self.sizes], dim=1
        )

    def linear_inputs(self, x: torch.Tensor) -> torch.Tensor | None:
        """One-hot: one input per category of each column, 1 where the row holds it."""
        out = torch.zeros(len(x), sum(self.sizes))
        start = 0
        for j, size in enumerate(self.sizes):
            out[torch.arange(len(x)), start + x[:, j]] = 1.0
            start += size
        return out

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "sizes": self.sizes}

    def input_names(self) -> list[str]:
        names = []
        for name, categories, other in zip(self.columns, self.categories, self.other, strict=True):
            names += [f"{name}={'(empty)' if c is None else c}" for c in categories]
            names += [f"{name}=(other)"] * other
        return names

    def column_part(self, column: str) -> tuple[Any, ...]:
        return per_column(self.columns, column)

    def describe(self) -> str:
        shown = ", ".join(f"{n} ({s})" for n, s in zip(self.columns[:8], self.sizes, strict=False))
        more = f" and {len(self.columns) - 8} more" if len(self.columns) > 8 else ""
        return (
            f"{len(self.columns)} category column(s), one code a row and "
            f"{sum(self.sizes):,} learned weights a model output: {shown}{more}"
        )

    def untested(self) -> str:
        return f"categories of {', '.join(self.columns[:4])} that the training rows did not have"

    def export_input(self) -> dict[str, Any]:
        return {
            "name": "categories",
            "dtype": "int64",
            "shape": ["batch", len(self.columns)],
            "columns": list(self.columns),
            "categories": dict(zip(self.columns, self.categories, strict=True)),
            "other": dict(zip(self.columns, self.other, strict=True)),
            "how": "each column's category as its place in 'categories' of that column, in "
            "this column order (an empty cell as the place of null, where it is listed); a "
            "category not listed, where 'other' is true, as the number of categories listed "
            "(grouped by --max-categories, or new)",
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "columns": self.columns,
            "categories": self.categories,
            "other": self.other,
        }


class CategoryWeights(nn.Module):
    """A category block's layer: each column's code picks its row of one embedding table
    (`weight`, one row per category of every column, as wide as the model's first layer),
    and the rows a row picked are summed: one-hot inputs times their weights, without the
    one-hot columns."""

    adds = True
    features_out = 0

    def __init__(self, sizes: list[int], width: int) -> None:
        super().__init__()
        self.inputs = sum(sizes)  # the one-hot inputs it stands for
        self.weight = nn.Parameter(torch.zeros(self.inputs, width))
        starts = np.cumsum([0, *sizes[:-1]]).tolist()
        self.register_buffer("offsets", torch.tensor(starts, dtype=torch.long), persistent=False)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding_bag(codes + self.offsets, self.weight, mode="sum")


class CategoryKind(Kind):
    name = "category"
    takes_missing = True  # an empty cell is a category of its own

    def recognise(self, column: pa.ChunkedArray, name: str, where: Source) -> str | None:
        return "text of a few distinct values" if is_text(column.type) else None

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
        kept: list[str] = []
        categories: list[list[Any]] = []
        other: list[bool] = []
        for name in columns:
            column = table.column(name)
            if not is_text(column.type):  # numbers named a category with --kind: their text
                column = arrow.cast(column, pa.string())
            if options.categorical != "auto":
                raise DataError(
                    f"column '{name}' of {where.name} holds text: use --categorical auto to "
                    f"encode it, or leave it out with --exclude {name}"
                )
            found = sorted_labels(arrow.unique(column))  # the values given
            empty = column.null_count > 0  # empty cells: a category of their own, None, last
            if len(found) + empty < 2:
                left_out.append((name, *((SAME, repr(found[0])) if found else (EMPTY, ""))))
                continue
            if len(found) == table.num_rows > MANY_CATEGORIES and not options.keep_ids:
                left_out.append((name, IDS, ""))
                continue
            listed, extra = found, False
            if options.max_categories and len(found) > options.max_categories:
                listed, extra = _most_frequent(found, column, train, options.max_categories)
            _point_out_many(name, len(listed), extra, len(found), table.num_rows, where)
            kept.append(name)
            categories.append([*listed, None] if empty else listed)
            other.append(extra)
        return [CategoryBlock(kept, categories, other)] if kept else []

    def from_dict(self, raw: dict[str, Any]) -> Block:
        columns, categories, other = raw.get("columns"), raw.get("categories"), raw.get("other")
        if not (isinstance(columns, list) and columns and all(isinstance(c, str) for c in columns)):
            raise malformed("a category block needs its column names")
        if not (
            isinstance(categories, list)
            and isinstance(other, list)
            and len(categories) == len(other) == len(columns)
        ):
            raise malformed("a category block needs categories and 'other' for each column")
        for name, listed, extra in zip(columns, categories, other, strict=True):
            if not isinstance(extra, bool):
                raise malformed(f"column '{name}' has a non-boolean 'other'")
            if not isinstance(listed, list) or not listed:
                raise malformed(f"column '{name}' has no categories")
            given = listed[:-1] if listed[-1] is None else listed  # None: empty cells, last
            if not all(isinstance(c, (str, int, float, bool)) for c in given):
                raise malformed(f"column '{name}' lists a category that is not text or a number")
            if len({str(c) for c in listed}) < len(listed):
                raise malformed(f"column '{name}' lists a category twice")
        return CategoryBlock(list(columns), [list(c) for c in categories], list(other))

    def layer(self, spec: dict[str, Any], width: int) -> nn.Module:
        return CategoryWeights(list(spec["sizes"]), width)

    def spec_words(self, spec: dict[str, Any]) -> str:
        n = len(spec["sizes"])
        return f"{n} category column{'s' if n != 1 else ''}"

    def check_spec(self, spec: dict[str, Any]) -> str:
        sizes = spec.get("sizes")
        if not (
            isinstance(sizes, list)
            and sizes
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes)
            and sum(sizes) <= MAX_CATEGORIES
        ):
            return f"a category block of sizes {sizes!r:.60}"
        return ""


KIND = CategoryKind()


def category_codes(column: pa.ChunkedArray, categories: list[Any]) -> pa.ChunkedArray:
    """Each row's position in `categories` (null where it is not one of them)."""
    values = arrow.cast(column, pa.string()) if not is_text(column.type) else column
    return arrow.index_in(values, arrow.from_values([str(c) for c in categories]))


def integers(column: pa.ChunkedArray) -> np.ndarray:
    """An integer column without nulls as one int64 array."""
    parts = [arrow.to_numpy(chunk) for chunk in column.chunks]
    values = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return values.astype(np.int64, copy=False)


def _most_frequent(
    found: list[Any], column: pa.ChunkedArray, train: TrainingRows, keep: int
) -> tuple[list[Any], bool]:
    """A column's `keep` most frequent categories on the training rows (ties in sorted
    order), the others, and any category seen later, as one `other` code."""
    codes = integers(category_codes(column, found))
    counts = train.counts(codes, len(found))
    kept = np.sort(np.argsort(-counts, kind="stable")[:keep])
    return [found[i] for i in kept], True


def _point_out_many(
    name: str, listed: int, other: bool, distinct: int, rows: int, where: Source
) -> None:
    """A line about a column of many categories, with the ways to cap it."""
    if distinct < MANY_CATEGORIES and distinct < ID_SHARE * rows:
        return
    if other:
        where.say(
            f"   Column '{name}': its {listed} most frequent of {distinct:,} categories kept, "
            "the others as one 'other' code (--max-categories)"
        )
    elif distinct >= ID_SHARE * rows:
        where.say(
            f"   Warning: column '{name}' of {where.name} has a different value in {distinct:,} "
            f"of {rows:,} rows: it looks like an ID, which a model cannot learn from; leave it "
            f"out with --exclude {name}"
        )
    else:
        where.say(
            f"   Column '{name}' of {where.name} has {distinct:,} categories: one weight each a "
            f"model output; keep the most frequent with --max-categories 50, or leave it out "
            f"with --exclude {name}"
        )
