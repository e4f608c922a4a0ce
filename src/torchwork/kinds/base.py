"""What every kind of data shares: where rows come from (Source), the model's inputs for some
rows (Inputs), one kind's columns encoded as one of those inputs (Block), and the kind
itself (Kind), which recognises its columns and fits their blocks.

A kind is one module (or package) under `kinds/` and one line in `registry.KINDS`. It knows
everything about its columns: how to recognise them, read and decode them once, encode them
(fitted on the training rows, stored as plain data), turn them into features for the model
(its layer), augment them, take them from a request, hand them to an exported graph, and
say what it found. Nothing outside a kind asks which kind it holds: the code above calls the
methods below, whose defaults fit a kind that has nothing to say. (Two modules read kinds by
name on purpose: legacy.py, which reads model files written before the kinds, and eject.py,
whose script writes out the encodings of numbers and categories alone.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from torchwork.errors import DataError

# What decoding a table's columns gives: the table (less the rows dropped), the decoded
# values by column, and the rows kept (None: all of them).
Decoded = tuple[pa.Table, dict[str, Any], "np.ndarray | None"]


@dataclass
class Source:
    """Where rows come from, for messages and for the files a column names: `name` as a
    message says it ("data/reviews.csv", "the request"); `root`, the folder that relative
    paths in a column are read from (None: a column may not name files, as in a request
    that serve answers)."""

    name: str = "the input"
    root: Path | None = None
    skip_bad: bool = False  # drop rows whose file cannot be used (else they are an error)
    encoding: str = "utf-8"  # of the text files a column names
    log: Callable[[str], None] | None = None  # where a kind says what it dropped or capped
    max_pixels: int | None = None  # pictures sent to a server: at most this many pixels

    def say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)


class Inputs:
    """A model's inputs for some rows: one tensor per block, in the blocks' order, each with
    one row per row. Indexed, sliced, moved and joined row-wise as a tensor is, so that the
    training loop, batches, chunks and shards handle them without knowing what they hold.

    >>> X = Inputs([torch.zeros(5, 2), torch.zeros(5, 3, dtype=torch.long)])
    >>> len(X), len(X[1:3]), X[torch.tensor([0, 4])].tensors[1].shape
    (5, 2, torch.Size([2, 3]))
    """

    __slots__ = ("tensors",)

    def __init__(self, tensors: Iterable[torch.Tensor]) -> None:
        self.tensors = tuple(tensors)

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: Any) -> Inputs:
        return Inputs(t[index] for t in self.tensors)

    def index_select(self, dim: int, index: torch.Tensor) -> Inputs:
        return Inputs(t.index_select(dim, index) for t in self.tensors)

    def to(self, *args: Any, **kwargs: Any) -> Inputs:
        return Inputs(t.to(*args, **kwargs) for t in self.tensors)

    def contiguous(self) -> Inputs:
        return Inputs(t.contiguous() for t in self.tensors)

    @property
    def device(self) -> torch.device:
        return self.tensors[0].device

    @staticmethod
    def cat(parts: Sequence[Inputs]) -> Inputs:
        return Inputs(cat_rows(ts) for ts in zip(*(p.tensors for p in parts), strict=True))

    def __repr__(self) -> str:
        shapes = ", ".join(f"{t.dtype} {list(t.shape)}" for t in self.tensors)
        return f"Inputs({shapes})"


def cat_rows(parts: Sequence[Any]) -> Any:
    """Rows of tensors, of Ragged rows, or of Inputs, one after another."""
    if parts and isinstance(parts[0], (Inputs, Ragged)):
        return type(parts[0]).cat(parts)
    return torch.cat(list(parts))


class Ragged:
    """Rows of different lengths (each document's token ids): row i is
    values[offsets[i]:offsets[i + 1]]. Indexed, moved and joined row-wise as a tensor is;
    `padded` gives the [rows, longest] matrix with 0 in the gaps, as an exported graph takes
    it. Holding each row's own length, a batch costs its tokens, not its longest row's.

    >>> r = Ragged(torch.tensor([5, 6, 7]), torch.tensor([0, 2, 2, 3]))
    >>> len(r), r[[2, 0]].padded().tolist()
    (3, [[7, 0], [5, 6]])
    """

    __slots__ = ("offsets", "values")

    def __init__(self, values: torch.Tensor, offsets: torch.Tensor) -> None:
        self.values, self.offsets = values, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def device(self) -> torch.device:
        return self.values.device

    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def __getitem__(self, index: Any) -> Ragged:
        if isinstance(index, int):
            raise TypeError("a Ragged is indexed by rows: give a slice, a list or a tensor")
        if isinstance(index, torch.Tensor) and index.dtype == torch.bool:
            index = torch.nonzero(index).reshape(-1)
        if isinstance(index, slice) and index.step in (None, 1):
            start, stop, _ = index.indices(len(self))
            stop = max(start, stop)
            offsets = self.offsets[start : stop + 1]
            values = self.values[offsets[0] : offsets[-1]] if len(offsets) else self.values[:0]
            return Ragged(values, offsets - offsets[0] if len(offsets) else self.offsets[:1])
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        return self.index_select(0, torch.as_tensor(index, dtype=torch.long))

    def index_select(self, dim: int, index: torch.Tensor) -> Ragged:
        index = index.to(self.offsets.device)
        starts = self.offsets[index]
        lengths = self.offsets[index + 1] - starts
        offsets = torch.zeros(len(index) + 1, dtype=torch.long, device=self.offsets.device)
        torch.cumsum(lengths, 0, out=offsets[1:])
        row = torch.repeat_interleave(torch.arange(len(index), device=index.device), lengths)
        where = torch.arange(len(row), device=index.device) - offsets[row] + starts[row]
        return Ragged(self.values[where], offsets)

    def to(self, *args: Any, **kwargs: Any) -> Ragged:
        return Ragged(self.values.to(*args, **kwargs), self.offsets.to(*args, **kwargs))

    def contiguous(self) -> Ragged:
        return self

    def clone(self) -> Ragged:
        return Ragged(self.values.clone(), self.offsets.clone())

    def parts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The tensors it is made of, for a fingerprint."""
        return self.values, self.offsets

    @staticmethod
    def cat(parts: Sequence[Ragged]) -> Ragged:
        values = torch.cat([p.values for p in parts])
        shifts, offsets = 0, [parts[0].offsets[:1]]
        for p in parts:
            offsets.append(p.offsets[1:] + shifts)
            shifts += int(p.offsets[-1])
        return Ragged(values, torch.cat(offsets))

    def padded(self) -> torch.Tensor:
        """The rows as a matrix [rows, longest row], 0 after each row's end."""
        lengths, device = self.lengths(), self.values.device
        width = int(lengths.max()) if len(lengths) else 0
        out = torch.zeros(len(self), max(width, 1), dtype=self.values.dtype, device=device)
        row = torch.repeat_interleave(torch.arange(len(self), device=device), lengths)
        column = torch.arange(len(row), device=device) - self.offsets[row]
        out[row, column] = self.values
        return out

    def __repr__(self) -> str:
        return f"Ragged({len(self)} rows, {len(self.values)} values)"


@dataclass
class Block:
    """One input of a model: one kind's columns, encoded. Fitted on the training rows, stored
    in the model file as plain data (`to_dict`, the kind's `from_dict`); `spec` is what the
    model's layer for it is built from."""

    kind: ClassVar[str] = ""
    augments: ClassVar[bool] = False  # whether `augment` changes training batches
    suffixes: ClassVar[tuple[str, ...]] = ()  # the files its column names, by suffix
    media_types: ClassVar[tuple[str, ...]] = ()  # what a server takes as one such file
    columns: list[str] = field(default_factory=list)

    # --- Step 1: rows to tensors ---------------------------------------------------------

    def decode(self, table: pa.Table, where: Source) -> Decoded:
        """Read what the columns name (files) once, as the block was fitted to: see
        Kind.decode. Most blocks read nothing."""
        return table, {}, None

    def encode(
        self,
        table: pa.Table,
        where: Source,
        decoded: dict[str, Any] | None = None,
        order: np.ndarray | None = None,
    ) -> torch.Tensor:
        """The block's tensor for the table's rows (with `order`: row k is table row
        order[k]), one row per row. `decoded`: what `decode` gave for this table, by
        column."""
        raise NotImplementedError

    def raw(
        self, table: pa.Table, where: Source, decoded: dict[str, Any] | None = None
    ) -> torch.Tensor:
        """The rows as an exported graph takes them (`graph_layer` runs first in the graph)."""
        return self.encode(table, where, decoded)

    def example(self, rows: int, generator: torch.Generator) -> torch.Tensor:
        """Made-up rows as an exported graph takes them, for checking an export whose
        training data is gone."""
        raise NotImplementedError

    def from_json(self, column: str, values: list[Any], where: Source) -> pa.Array:
        """A column of a request's JSON rows, every value checked, as the table column that
        `encode` reads. A file path is never accepted: a server opens no path a client sends."""
        raise NotImplementedError

    # --- Step 2: the model's part ---------------------------------------------------------

    def spec(self) -> dict[str, Any]:
        """The shape of the layer this block's tensor goes through (the kind's `layer`)."""
        return {"kind": self.kind, "columns": len(self.columns)}

    def prime(self, layer: nn.Module, X_train: torch.Tensor) -> None:
        """Set what the layer takes from the training rows before training (an image
        layer's pixel statistics); most layers take nothing."""

    def augment(self, x: torch.Tensor, generator: torch.Generator, how: str) -> torch.Tensor:
        """A training batch of the block's tensor, changed at random (`how`: --augment)."""
        return x

    def graph_layer(self) -> nn.Module | None:
        """What an exported graph does to `raw` inputs before the model (standardizing
        numbers); None: they go in as they are."""
        return None

    # --- In words, and in the files beside an export --------------------------------------

    def input_names(self) -> list[str]:
        """What the block gives the model's first layer, one name each: the names of a
        linear model's weights."""
        return list(self.columns)

    def standardization(self) -> tuple[list[float], list[float]]:
        """The mean and std that the block's first inputs were standardized with (a linear
        model's weights are read in the columns' own units through them); none: ([], [])."""
        return [], []

    def linear_inputs(self, x: torch.Tensor) -> torch.Tensor | None:
        """The block's tensor as the float inputs of a linear model (one-hot categories): what
        the closed-form reference fits; None when no linear model of them can be solved."""
        return None

    def column_part(self, column: str) -> tuple[Any, ...]:
        """The part of the block's tensor that one source column is (permutation importance
        shuffles it): the whole tensor, for a block of one column."""
        return (slice(None),)

    def describe(self) -> str:
        """What the block is, in a few words, for the terminal, the report and the card."""
        return f"{self.kind}: {', '.join(self.columns)}"

    def untested(self) -> str:
        """What the model was not tested on, for this block's columns (the model card)."""
        return ""

    def draw(
        self,
        folder: Path,
        x_test: torch.Tensor,
        y_test: torch.Tensor,
        decoded: Any,
        labels: list[Any],
    ) -> None:
        """Pictures of this block's test rows (a grid of pictures with their predicted and
        true labels); `decoded`: the encoder's decode of the test outputs."""

    def explain(
        self, model: nn.Module, X: Inputs, position: int, encoder: Any
    ) -> dict[str, Any] | None:
        """What in this block's columns pushes the model's outputs, measured on test rows X
        (the block is X.tensors[position]), as plain values for summary.json, which the
        terminal, the report and the card show as they come: {"title", "measure", "rows",
        "groups": {group (a class): [[item (a word), push], ...]}}. None: nothing to say."""
        return None

    def examples(
        self, table: pa.Table, decoded: dict[str, Any], rows: np.ndarray
    ) -> dict[str, list[str]]:
        """A few rows of the block's columns as a person reads them (a document's start),
        to show beside the model's mistakes; {} when a row is not shown that way."""
        return {}

    def takes_missing(self, column: str) -> bool:
        """Whether an empty cell of this column is taken (as training took them), or refused."""
        return False

    def describe_input(self) -> dict[str, Any]:
        """What a server says it takes for this block (its /health), as plain values."""
        return {"input": self.kind}

    def export_input(self) -> dict[str, Any]:
        """What an exported graph takes for this block: name, dtype, shape, and how rows
        become it (for the file beside the export)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


class Kind:
    """A kind of data: recognises its columns and fits their blocks; builds the layer a
    block's tensor goes through from the block's spec. One object per kind module."""

    name: ClassVar[str] = ""
    takes_missing: ClassVar[bool] = False  # its columns may have empty cells (a run keeps them)

    def recognise(self, column: pa.ChunkedArray, name: str, where: Source) -> str | None:
        """Why `column` holds this kind of data ("numbers", "free text: ..."), or None."""
        return None

    def accepts(self, column: pa.ChunkedArray) -> str | None:
        """Why a column named for this kind with --kind cannot be read as it (the rest of
        "column 'x' ..."), or None when it can."""
        return None

    def decode(self, table: pa.Table, columns: list[str], where: Source, options: Any) -> Decoded:
        """Read what these columns name (files) once, before the rows are split: the table,
        less the rows whose file cannot be used when `where.skip_bad` (else such a file is
        an error that names it), what `encode` takes from each column, and the table rows
        kept (None when every row was)."""
        return table, {}, None

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
        """The blocks of these columns, fitted on the training rows. A column that cannot
        be learned from is added to `left_out` as (name, why, a detail or ""), `why` the
        rest of "Left out 2 ...: 'a', 'b'" ("column(s) with the same value in every row")."""
        raise NotImplementedError

    def from_dict(self, raw: dict[str, Any]) -> Block:
        """A block as a model file stores it, every field checked (a DataError otherwise)."""
        raise NotImplementedError

    def layer(self, spec: dict[str, Any], width: int) -> nn.Module:
        """The layer for a block of this spec. It either gives `features_out` numbers a row,
        joined with the other blocks' into the model's first layer (`adds` False), or
        adds its own [rows, width] to that layer's output (`adds` True: a category's
        weights, which a one-hot input would have multiplied)."""
        raise NotImplementedError

    def check_spec(self, spec: dict[str, Any]) -> str:
        """What is wrong with a block spec read from a model file, or ""."""
        return ""

    def spec_words(self, spec: dict[str, Any]) -> str:
        """A block spec in a few words, for a model's description: "3 number columns"."""
        return f"1 {self.name} column"

    def spec_for(
        self, model: str, in_features: int, hidden: list[int], image_size: int
    ) -> dict[str, Any]:
        """The block spec of one column of this kind for a model built by name alone
        (models.build_model's in_features, hidden sizes and image size: a picture model's
        channels, widths and side)."""
        raise NotImplementedError(f"a model of one {self.name} column is built from its data")


SAME = "column(s) with the same value in every row"  # why a column is left out (Kind.fit)
EMPTY = "column(s) empty in every row"


def short(value: Any) -> str:
    """A value as a client or a file wrote it, cut short, for a message."""
    import json

    try:
        text = json.dumps(value) if not isinstance(value, float) else repr(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def graph_name(prefix: str, column: str) -> str:
    """An exported graph's input for a column: `prefix` alone for a folder's one column
    (`file`), else prefix_column with letters, digits and _ only."""
    if column == "file":
        return prefix
    return f"{prefix}_{''.join(c if c.isalnum() else '_' for c in column)[:40]}"


NAMES_LOOKED_AT = 1000  # a column's first values looked at to recognise names of files


def names_files(values: pa.ChunkedArray, suffixes: tuple[str, ...]) -> bool:
    """Whether a column's values are names of files of these suffixes (its first
    NAMES_LOOKED_AT values that are not empty all are)."""
    import os

    from torchwork.tables.check import is_text

    if not is_text(values.type):
        return False
    sample = [v for v in values.slice(0, NAMES_LOOKED_AT).to_pylist() if v]
    return bool(sample) and all(os.path.splitext(v)[1].lower() in suffixes for v in sample)


def named_file(name: Any, column: str, row: int, where: Source, what: str = "files") -> Path:
    """The file a cell names, relative to the table's folder (`where.root`): one that is
    missing, or that leaves the folder (an absolute path, or one through ..), is one line
    naming the row. A server (no root) opens none."""
    import os

    if where.root is None:
        raise DataError(
            f"column '{column}' of {where.name} names files, which are not opened here: send "
            f"the {what} themselves"
        )
    if not isinstance(name, str) or not name:
        raise DataError(f"column '{column}' of {where.name} has no file name in row {row + 1}")
    normal = os.path.normpath(name)
    if os.path.isabs(normal) or normal == ".." or normal.startswith(".." + os.sep):
        raise DataError(
            f"column '{column}' of {where.name} names {name!r} in row {row + 1}, outside the "
            f"table's folder {where.root}: name the {what} relative to that folder, inside it"
        )
    path = where.root / normal
    if not path.is_file():
        raise DataError(
            f"column '{column}' of {where.name} names {name!r} in row {row + 1}, which does not "
            f"exist in {where.root}: fix the name, or remove the row"
        )
    return path


def say_dropped(where: Source, dropped: Sequence[tuple[Any, str]], shown: int = 3) -> None:
    """The files dropped with --skip-bad, (name, why) each: the first few, then how many."""
    for name, why in dropped[:shown]:
        where.say(f"   Dropped {name}: it {why}")
    if len(dropped) > shown:
        where.say(f"   ... and {len(dropped) - shown:,} more files that could not be used")


def per_column(columns: list[str], column: str) -> tuple[Any, ...]:
    """The part of a block's [rows, columns] tensor that one of its columns is."""
    j = columns.index(column)
    return (slice(None), slice(j, j + 1))


def picture_name(name: str, column: str) -> str:
    """A picture of one column's, in plots/: `name` for a folder's one column (`file`), else
    name_column.png, the column's name with letters, digits and _ only."""
    if column == "file":
        return name
    stem, _, suffix = name.rpartition(".")
    return f"{graph_name(stem, column)}.{suffix}"


def malformed(problem: str) -> DataError:
    return DataError(f"the stored preprocessing is malformed: {problem}")


class TrainingRows:
    """Counts, means and standard deviations over the training rows of a column, from sums
    over whichever is fewer: the training rows themselves, or all rows less the others. A
    sum over all rows reads them in order; a gather of 1.6M of 2M rows took 40 ms a column
    here."""

    def __init__(self, rows: np.ndarray, total: int) -> None:
        self.count = len(rows)
        self.total = total
        self.negate = 2 * len(rows) > total
        if self.negate:
            others = np.ones(total, dtype=bool)
            others[rows] = False
            rows = np.flatnonzero(others)
        self.rows = rows

    def mask(self) -> np.ndarray:
        """True at every training row."""
        mask = np.zeros(self.total, dtype=bool)
        mask[self.rows] = True
        return ~mask if self.negate else mask

    def counts(self, codes: np.ndarray, size: int) -> np.ndarray:
        """How many training rows hold each code in range(size)."""
        counts = np.bincount(codes[self.rows], minlength=size)
        return np.bincount(codes, minlength=size) - counts if self.negate else counts

    def mean_std(self, values: np.ndarray) -> tuple[float, float]:
        """In float64, each rounded to float32 as stored; a std of 0 (constant on the
        training rows) becomes 1: centre the column, do not divide by zero. Empty cells
        (NaN) are left out: the mean and std of the values given."""
        import math

        # Sums of values less a shift near their mean: the variance from them keeps its
        # digits however far from zero the values lie.
        shift = float(np.mean(values[:1024], dtype=np.float64))

        def sums(part: np.ndarray) -> tuple[float, float]:
            centred = part.astype(np.float64) - shift
            return float(centred.sum()), float(np.dot(centred, centred))

        empty = np.isnan(values)
        if empty.any():  # the training rows' given values alone
            given = values[self.mask() & ~empty].astype(np.float64)
            if not len(given):
                return 0.0, 1.0
            shift = float(np.float32(given[:1024].mean()))
            centred = given - shift
            mean = float(centred.mean())
            spread = float(np.dot(centred, centred)) / len(given) - mean * mean
            std = math.sqrt(max(spread, 0.0)) if len(given) > 1 else 0.0
            return float(np.float32(shift + mean)), float(np.float32(std)) if std > 0 else 1.0
        first, second = sums(values[self.rows])
        if self.negate:
            every = sums(values)
            first, second = every[0] - first, every[1] - second
        mean = first / self.count
        variance = max(second / self.count - mean * mean, 0.0) if self.count > 1 else 0.0
        std = math.sqrt(variance)
        return float(np.float32(shift + mean)), float(np.float32(std)) if std > 0 else 1.0
