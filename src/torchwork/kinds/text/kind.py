"""Text: a column of free text (many distinct values of several words), a column naming .txt
files, or a folder of class folders of .txt files, which stands for the table (file, label).

Each document becomes the ids of its words and bigrams, hashed into buckets (tokens.py), held
ragged (kinds.base.Ragged: a batch costs its own tokens). The model's layer for it is a
fastText-style bag: the mean of the ids' embeddings, whose numbers join the other columns'
in the model's first layer (Joulin et al. 2016, "Bag of Tricks for Efficient Text
Classification"). Its embedding learns from sparse gradients (SparseAdam): a step touches the
rows of the batch's ids alone, not the whole table.

Hashing loses the words: the most frequent n-grams of the training rows are kept as text
with their ids (`top`), so that a run can say which words and bigrams push each class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from torchwork import registry
from torchwork.errors import DataError
from torchwork.kinds.base import (
    Block,
    Decoded,
    Inputs,
    Kind,
    Ragged,
    Source,
    TrainingRows,
    graph_name,
    malformed,
    named_file,
    names_files,
    say_dropped,
    short,
)
from torchwork.kinds.text import tokens
from torchwork.tables import arrow
from torchwork.tables.check import is_text

SUFFIXES = registry.KINDS["text"].suffixes
MEDIA_TYPES = ("text/plain",)  # what a server takes as one document's body
MAX_WORDS = 1000  # words of a document kept, at most: its first ones
MAX_BYTES = MAX_WORDS * tokens.CHARACTERS_A_WORD * 4  # of a .txt file read: the rest is never read
DIM = 32  # numbers of each n-gram's embedding, and of a document's bag
MIN_BUCKETS, MAX_BUCKETS = 1 << 12, 1 << 19  # ids: twice the distinct n-grams, within these
TOP = 2000  # the most frequent n-grams of the training rows kept as text, with their ids
RECOGNISED_FROM = 1000  # values looked at to recognise a column of free text
EXPLAINED_NGRAMS = 500  # the most frequent n-grams whose push on each class is measured...
EXPLAINED_ROWS = 32  # ...each on this many test rows
SHOWN_NGRAMS = 10  # the n-grams named for each class
EXAMPLE_CHARACTERS = 200  # of a document shown beside a mistake
MIN_WORDS = 2.0  # free text: at least this many words a value, on average...
MANY_VALUES = 100  # ...and more distinct values than this (or than half the rows)
EMPTY_SHARE = 0.5  # a text column with no words in more rows than this is refused


@dataclass
class TextBlock(Block):
    """One column of text: how its documents become ids, and the bag they go through."""

    kind = "text"
    buckets: int = 1 << 20
    dim: int = DIM
    max_words: int = MAX_WORDS
    bigrams: bool = True
    files: bool = False  # the column names .txt files (relative to the table's folder)
    top: list[list[Any]] = field(default_factory=list)  # [n-gram, id, training count]

    @property
    def column(self) -> str:
        return self.columns[0]

    @property
    def suffixes(self) -> tuple[str, ...]:  # type: ignore[override]
        return SUFFIXES if self.files else ()

    @property
    def media_types(self) -> tuple[str, ...]:  # type: ignore[override]
        return MEDIA_TYPES if self.files else ()

    def decode(self, table: pa.Table, where: Source) -> Decoded:
        if not self.files and not pa.types.is_binary(table.column(self.column).type):
            return table, {}, None
        return read_documents(table, self.column, where)

    def documents(self, table: pa.Table, decoded: dict[str, Any] | None, where: Source) -> Any:
        """The column's documents as text: as read from its files, or as the table has them."""
        if decoded is not None and self.column in decoded:
            return decoded[self.column]
        if self.files or pa.types.is_binary(table.column(self.column).type):
            return read_documents(table, self.column, where)[1][self.column]
        column = table.column(self.column)
        column = column if is_text(column.type) else arrow.cast(column, pa.string())
        # An empty cell is a document of no words: the bag adds nothing for it
        return arrow.compute("fill_null", column, "") if column.null_count else column

    def encode(
        self,
        table: pa.Table,
        where: Source,
        decoded: dict[str, Any] | None = None,
        order: np.ndarray | None = None,
    ) -> Ragged:
        texts = self.documents(table, decoded, where)
        if order is not None:
            texts = texts.take(arrow.from_numpy(np.asarray(order, dtype=np.int64)))
        ids = tokens.tokenize(texts, self.buckets, self.max_words, self.bigrams)
        return Ragged(torch.from_numpy(ids.values), torch.from_numpy(ids.offsets))

    def raw(
        self, table: pa.Table, where: Source, decoded: dict[str, Any] | None = None
    ) -> torch.Tensor:
        return self.encode(table, where, decoded).padded()  # an export takes a matrix

    def from_json(self, column: str, values: list[Any], where: Source) -> pa.Array:
        """Documents in a request, as text (a server opens no file a client names)."""
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise DataError(
                    f"column '{column}' of {where.name} must hold text; row {i + 1} has "
                    f"{short(value)}"
                )
        if self.files:  # the column named files: its documents arrive as their text
            return pa.array([v.encode() for v in values], pa.binary())
        return pa.array(values, pa.string())

    def takes_missing(self, column: str) -> bool:
        return not self.files  # an empty document, but no file without its name

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "buckets": self.buckets, "dim": self.dim}

    def input_names(self) -> list[str]:
        return [f"{self.column}[{j}]" for j in range(self.dim)]

    def describe(self) -> str:
        what = ".txt files named by" if self.files else "text of"
        grams = "words and bigrams" if self.bigrams else "words"
        return (
            f"{what} '{self.column}': its {grams} hashed into {self.buckets:,} ids (the first "
            f"{self.max_words:,} words of each document), the mean of their {self.dim}-number "
            "embeddings"
        )

    def untested(self) -> str:
        return (
            f"texts unlike the training texts of '{self.column}' (other topics, language, "
            "length): a word it never saw shares the weights of the words hashed to its id"
        )

    def describe_input(self) -> dict[str, Any]:
        return {"input": "text", "max_words": self.max_words}

    def export_input(self) -> dict[str, Any]:
        name = graph_name("tokens", self.column)
        return {
            "name": name,
            "dtype": "int64",
            "shape": ["batch", "ids"],
            "column": self.column,
            "tokenizer": tokens.describe(self.buckets, self.max_words, self.bigrams),
            "how": f"each document of '{self.column}' as its token ids ('tokenizer': its words, "
            "then its bigrams), a row each, 0 after a row's end up to the longest",
        }

    def example(self, rows: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(1, self.buckets + 1, (rows, 12), generator=generator)

    def examples(
        self, table: pa.Table, decoded: dict[str, Any], rows: np.ndarray
    ) -> dict[str, list[str]]:
        texts = self.documents(table, decoded, Source())
        picked = texts.take(arrow.from_numpy(np.asarray(rows, dtype=np.int64))).to_pylist()
        return {self.column: [" ".join((t or "").split())[:EXAMPLE_CHARACTERS] for t in picked]}

    def explain(
        self, model: nn.Module, X: Inputs, position: int, encoder: Any
    ) -> dict[str, Any] | None:
        """Which of the kept n-grams (`top`) push each output: the model's outputs for test
        rows whose text is that n-gram alone, less those for an empty text, averaged over
        up to EXPLAINED_ROWS rows (the other columns as the rows have them). A linear
        model's push of an n-gram is the same on every row."""
        if not self.top or not len(X):
            return None
        rows = X[: min(len(X), EXPLAINED_ROWS)]
        grams = self.top[:EXPLAINED_NGRAMS]
        n, m, device = len(rows), len(grams), X.device
        repeat = torch.arange(n, device=device).repeat(m)  # row r of n-gram j at j * n + r
        tensors = list(rows[repeat].tensors)
        ids = torch.tensor([g[1] for g in grams], dtype=torch.long, device=device)
        tensors[position] = Ragged(ids.repeat_interleave(n), torch.arange(n * m + 1, device=device))
        empty = list(rows.tensors)
        nothing = torch.zeros(0, dtype=torch.long, device=device)
        empty[position] = Ragged(nothing, torch.zeros(n + 1, dtype=torch.long, device=device))

        was_training = model.training
        model.eval()
        with torch.inference_mode():
            base = model(Inputs(empty)).double()
            outputs = torch.cat(
                [model(Inputs(t[i : i + 4096] for t in tensors)) for i in range(0, n * m, 4096)]
            ).double()
        model.train(was_training)
        if encoder.task == "multiclass":  # how much more probable each class becomes
            base, outputs = base.log_softmax(dim=1), outputs.log_softmax(dim=1)
        push = (outputs.reshape(m, n, -1) - base.unsqueeze(0)).mean(dim=1).cpu()  # [n-grams, out]
        explained = _pushes(push, [g[0] for g in grams], encoder)
        return {"kind": self.kind, "column": self.column, "rows": n} | explained

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "columns": list(self.columns),
            "buckets": self.buckets,
            "dim": self.dim,
            "max_words": self.max_words,
            "bigrams": self.bigrams,
            "files": self.files,
            "tokenizer": tokens.TOKENIZER,
            "top": self.top,
        }


class TextBag(nn.Module):
    """A text block's layer: the mean of the embeddings of a document's ids (0 pads and is
    left out), `dim` numbers a document; its gradients are sparse (SparseAdam, or SGD)."""

    adds = False

    def __init__(self, buckets: int, dim: int) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(buckets + 1, dim, mode="mean", sparse=True, padding_idx=0)
        with torch.no_grad():  # small vectors, as fastText starts its input vectors
            self.bag.weight.uniform_(-1.0 / dim, 1.0 / dim)
            self.bag.weight[0].zero_()
        self.features_out = dim

    def forward(self, x: Any) -> torch.Tensor:
        if isinstance(x, Ragged):
            return self.bag(x.values, x.offsets[:-1])
        # Padded [rows, ids], as an exported graph takes them: the same mean, written with
        # plain operations (a bag's own padded path fixes the batch size when exported)
        vectors = nn.functional.embedding(x, self.bag.weight)
        present = (x != 0).unsqueeze(-1).to(vectors.dtype)
        counts = present.sum(dim=1).clamp(min=1)
        return (vectors * present).sum(dim=1) / counts


class TextKind(Kind):
    name = "text"
    takes_missing = True  # an empty cell is a document of no words

    def recognise(self, column: pa.ChunkedArray, name: str, where: Source) -> str | None:
        if not is_text(column.type):
            return None
        if names_files(column, SUFFIXES):
            return "names of text files"
        sample = [v for v in column.slice(0, RECOGNISED_FROM).to_pylist() if v]
        if not sample:
            return None
        distinct = arrow.compute("count_distinct", column).as_py()
        if distinct <= min(MANY_VALUES, len(column) // 2):
            return None  # a few values, repeated: categories
        words = tokens.words_of(pa.array(sample, pa.string()), MAX_WORDS)[0]
        per_value = len(words) / len(sample)
        if per_value >= MIN_WORDS:
            return f"free text: {distinct:,} distinct values of {per_value:.1f} words on average"
        return None

    def decode(self, table: pa.Table, columns: list[str], where: Source, options: Any) -> Decoded:
        decoded: dict[str, Any] = {}
        kept = None
        for column in columns:
            if not names_files(table.column(column), SUFFIXES):
                continue
            table, values, rows = read_documents(table, column, where)
            if rows is not None:
                decoded = {k: v.take(arrow.from_numpy(rows)) for k, v in decoded.items()}
                kept = rows if kept is None else kept[rows]
            decoded |= values
        return table, decoded, kept

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
        blocks: list[Block] = []
        for column in columns:
            files = column in decoded
            texts = decoded[column] if files else table.column(column)
            if not is_text(texts.type):
                texts = arrow.cast(texts, pa.string())
            words, parents = tokens.words_of(texts, MAX_WORDS)
            counts = np.bincount(parents, minlength=len(texts))
            empty = int((counts == 0).sum())
            if empty > EMPTY_SHARE * len(texts):
                raise DataError(
                    f"column '{column}' of {where.name} has no words in {empty:,} of "
                    f"{len(texts):,} rows: fill it in, or leave it out with --exclude {column}"
                )
            longest = int(counts.max()) if len(counts) else 0
            if longest > MAX_WORDS:
                cut = int((counts > MAX_WORDS).sum())
                where.say(
                    f"   Text '{column}': {cut:,} document(s) cut to their first {MAX_WORDS:,} "
                    f"words (the longest has {longest:,})"
                )
            rows = np.flatnonzero(train.mask())
            strings, hashes = tokens.ngram_strings(words, parents, rows)
            distinct, frequency = np.unique(hashes, return_counts=True)
            buckets = 1 << max(0, math.ceil(math.log2(max(2 * len(distinct), 1))))
            buckets = min(MAX_BUCKETS, max(MIN_BUCKETS, buckets))
            top = _top_ngrams(strings, hashes, distinct, frequency, buckets)
            where.say(
                f"   Text '{column}': {len(distinct):,} distinct words and bigrams in the training "
                f"rows, hashed into {buckets:,} ids"
            )
            blocks.append(TextBlock([column], buckets, DIM, MAX_WORDS, True, files, top))
        return blocks

    def from_dict(self, raw: dict[str, Any]) -> Block:
        columns = raw.get("columns")
        if not (isinstance(columns, list) and len(columns) == 1 and isinstance(columns[0], str)):
            raise malformed("a text block names one column")
        problem = self.check_spec(raw)
        max_words, top = raw.get("max_words"), raw.get("top", [])
        if not problem and raw.get("tokenizer") != tokens.TOKENIZER:
            problem = f"an unknown tokenizer {raw.get('tokenizer')!r:.40}"
        if not problem and not (isinstance(max_words, int) and 1 <= max_words <= MAX_WORDS):
            problem = f"a text block of max_words {max_words!r:.40}"
        if not problem and not (
            isinstance(top, list)
            and all(isinstance(t, list) and len(t) == 3 and isinstance(t[0], str) for t in top)
        ):
            problem = "a text block's top n-grams are not [text, id, count] lists"
        if problem:
            raise malformed(problem)
        return TextBlock(
            list(columns),
            raw["buckets"],
            raw["dim"],
            max_words,
            bool(raw.get("bigrams", True)),
            bool(raw.get("files", False)),
            [list(t) for t in top],
        )

    def layer(self, spec: dict[str, Any], width: int) -> nn.Module:
        return TextBag(spec["buckets"], spec["dim"])

    def check_spec(self, spec: dict[str, Any]) -> str:
        buckets, dim = spec.get("buckets"), spec.get("dim")
        for name, value, high in (("buckets", buckets, 1 << 24), ("dim", dim, 4096)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                return f"a text block of {name} {value!r:.40}"
        return ""


KIND = TextKind()


def read_documents(table: pa.Table, column: str, where: Source) -> Decoded:
    """The documents a column holds: each row's .txt file (relative to `where.root`) or sent
    bytes, read as `where.encoding`, at most MAX_BYTES of each. A file that is not text in
    that encoding, holds no words, or is missing is an error that names it; with
    `where.skip_bad` its row is dropped (and said) instead, but for a missing one."""
    values = table.column(column)
    sent = pa.types.is_binary(values.type)
    documents: list[str] = []
    kept: list[int] = []
    bad: list[tuple[str, str]] = []
    names: list[str] = []
    for i, value in enumerate(values.to_pylist()):
        if sent:
            name, data = f"row {i + 1} of '{column}'", value
        else:
            path = named_file(value, column, i, where, "text files")
            name = str(path)
            with open(path, "rb") as f:  # a 100 MB one-line file: its first MAX_BYTES
                data = f.read(MAX_BYTES)
        problem = _not_text(data or b"", where.encoding)
        if problem is None:
            documents.append((data or b"").decode(where.encoding, errors="ignore"))
            kept.append(i)
            names.append(name)
        else:
            bad.append((name, problem))
    # Documents without a word, found in one pass over them all
    texts = pa.array(documents, pa.string())
    words = np.bincount(tokens.words_of(texts, 1)[1], minlength=len(documents))
    if not words.all():
        empty = np.flatnonzero(words == 0)
        bad += [(names[j], "holds no words") for j in empty.tolist()]
        bad.sort(key=lambda b: b[0])
        full = np.flatnonzero(words > 0)
        texts = texts.take(arrow.from_numpy(full))
        kept = [kept[j] for j in full.tolist()]
    if bad and (not where.skip_bad or sent):
        name, problem = bad[0]
        fix = "give its --encoding (for example latin-1), or " if "text (a byte" in problem else ""
        raise DataError(
            f"text file {name} {problem}: {fix}replace or remove it, or pass --skip-bad to "
            "drop such files"
            if not sent
            else f"the text in {name} {problem}"
        )
    say_dropped(where, bad)
    if not bad:
        return table, {column: texts}, None
    rows = np.asarray(kept, dtype=np.int64)
    if not len(rows):
        raise DataError(f"no text file of column '{column}' of {where.name} can be read")
    return table.take(arrow.from_numpy(rows)), {column: texts}, rows


def _not_text(data: bytes, encoding: str) -> str | None:
    """Why some bytes are not a text file in `encoding`, or None."""
    if b"\x00" in data[:8192]:
        return "is not text (it holds zero bytes: a binary file?)"
    try:
        data.decode(encoding)
    except UnicodeDecodeError as e:
        if len(data) >= MAX_BYTES and e.start >= len(data) - 4:
            return None  # a character cut in two where the file was cut
        return f"is not {encoding} text (a byte at {e.start:,} cannot be read as {encoding})"
    except LookupError:
        return f"cannot be read: unknown encoding {encoding}"
    return None


def _pushes(push: torch.Tensor, grams: list[str], encoder: Any) -> dict[str, Any]:
    """The n-grams that push each class most (a binary model: in log-odds, its one logit for
    its second class and against it for its first; a multiclass model: the rise in each
    class's log-probability), or raise and lower a regression's prediction (in the target's
    units)."""

    def best(values: torch.Tensor) -> list[list[Any]]:
        order = torch.argsort(values, descending=True, stable=True)[:SHOWN_NGRAMS]
        return [[grams[i], round(float(values[i]), 4)] for i in order.tolist() if values[i] > 0]

    labels = [str(label) for label in encoder.labels]
    if encoder.task == "regression":
        scaled = push[:, 0] * encoder.target_std
        return {
            "title": "the words and bigrams that raise and lower the prediction most",
            "measure": "the target's units",
            "groups": {"raise the prediction": best(scaled), "lower the prediction": best(-scaled)},
        }
    title = "the words and bigrams that push each class most"
    if encoder.task == "binary":
        logit = push[:, 0]
        groups = {labels[1]: best(logit), labels[0]: best(-logit)}
        return {"title": title, "measure": "log-odds", "groups": groups}
    groups = {label: best(push[:, j]) for j, label in enumerate(labels)}
    return {"title": title, "measure": "log-probability", "groups": groups}


def _top_ngrams(
    strings: Any, hashes: np.ndarray, distinct: np.ndarray, frequency: np.ndarray, buckets: int
) -> list[list[Any]]:
    """The TOP most frequent n-grams of the training rows as [text, id, count]: the words
    a run can name when it says which push each class."""
    if not len(distinct):
        return []
    chosen = np.argsort(-frequency, kind="stable")[:TOP]
    wanted = distinct[chosen]
    first = {}
    where = np.isin(hashes, wanted)
    for text, h in zip(
        strings.filter(pa.array(where)).to_pylist(), hashes[where].tolist(), strict=True
    ):
        first.setdefault(h, text)
    return [
        [first[int(h)], int(h % buckets + 1), int(n)]
        for h, n in zip(wanted.tolist(), frequency[chosen].tolist(), strict=True)
        if int(h) in first
    ]
