"""Numbers from text: one tokenizer, described exactly here and in every export's sidecar, so
that another program can turn a document into the same token ids.

1. Case: the document lower-cased by Unicode's rules (Arrow's `utf8_lower`, utf8proc).
2. Words: the maximal runs of Unicode letters, combining marks, digits and underscores
   (PATTERN splits on everything else); the first `max_words` of them are kept.
3. N-grams: every word (a unigram) and every pair of neighbouring words (a bigram).
4. Ids: a word's hash is the CRC-32 of its UTF-8 bytes (zlib's `crc32`, initial value 0),
   a bigram's is (hash(w1) * 116049371 + hash(w2)) mod 2**32, fastText's way of combining
   word hashes; the id is hash mod `buckets` + 1. Id 0 pads a row of a padded matrix.
Python's own `hash()` changes between processes: it is never used.

The whole pipeline runs in Arrow's and NumPy's compiled code; Python touches each distinct
word once (its CRC-32), never each word of each document.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from torchwork.tables import arrow

try:  # the compiled options, without pyarrow.compute's wrappers (0.15 s to import)
    from pyarrow._compute import JoinOptions, SliceOptions, SplitPatternOptions
except ImportError:  # pragma: no cover - where pyarrow moves them, their public home
    from pyarrow.compute import JoinOptions, SliceOptions, SplitPatternOptions

PATTERN = r"[^\p{L}\p{M}\p{N}_]+"  # what separates words (RE2 syntax, as Arrow runs it)
BIGRAM_FACTOR = 116049371  # a bigram's hash: hash(w1) * this + hash(w2), mod 2**32
CHARACTERS_A_WORD = 64  # a document is cut to max_words * this characters before splitting
TOKENIZER = "words-crc32"  # the name of this tokenizer in a model file


@dataclass(frozen=True)
class Tokens:
    """The token ids of some documents, ragged: document i's ids are
    values[offsets[i]:offsets[i + 1]], its unigrams then its bigrams."""

    values: np.ndarray  # int64 ids, 1 to buckets
    offsets: np.ndarray  # int64 [documents + 1]
    words: np.ndarray  # int64 [documents]: how many words each document has, before the cap
    kept: np.ndarray  # int64 [documents]: how many of them were kept (at most max_words)


def words_of(texts: pa.Array | pa.ChunkedArray, max_words: int) -> tuple[Any, np.ndarray]:
    """The documents' words, lower-cased (a flat string array), and each word's document."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    texts = arrow.compute("coalesce", texts, pa.scalar("", texts.type))
    # A 100 MB one-line document is cut before it is split: memory stays bounded
    cut = SliceOptions(0, max_words * CHARACTERS_A_WORD)
    texts = arrow.compute("utf8_slice_codeunits", texts, options=cut)
    lower = arrow.compute("utf8_lower", texts)
    words = arrow.compute("split_pattern_regex", lower, options=SplitPatternOptions(PATTERN))
    flat = arrow.compute("list_flatten", words)
    parents = arrow.compute("list_parent_indices", words).to_numpy(zero_copy_only=False)
    present = arrow.compute("not_equal", flat, pa.scalar("", flat.type))  # "" at a start
    kept = arrow.compute("filter", flat, present)
    return kept, parents.astype(np.int64)[present.to_numpy(zero_copy_only=False)]


def word_hashes(words: Any) -> np.ndarray:
    """Each word's CRC-32, computed once per distinct word."""
    if not len(words):
        return np.zeros(0, dtype=np.int64)
    encoded = arrow.compute("dictionary_encode", words)
    distinct = encoded.dictionary.to_pylist()
    hashes = np.fromiter((zlib.crc32(w.encode()) for w in distinct), np.int64, len(distinct))
    return hashes[encoded.indices.to_numpy(zero_copy_only=False)]


def tokenize(
    texts: pa.Array | pa.ChunkedArray, buckets: int, max_words: int, bigrams: bool = True
) -> Tokens:
    """The documents' token ids (module docstring), ragged."""
    documents = len(texts)
    words, parents = words_of(texts, max_words)
    counts = np.bincount(parents, minlength=documents).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(len(parents), dtype=np.int64) - starts[parents]
    keep = position < max_words
    hashes = word_hashes(
        arrow.compute("filter", words, pa.array(keep)) if not keep.all() else words
    )
    parents, position = parents[keep], position[keep]
    kept = np.minimum(counts, max_words)
    pairs = np.maximum(kept - 1, 0) if bigrams else np.zeros(documents, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(kept + pairs)]).astype(np.int64)
    values = np.empty(int(offsets[-1]), dtype=np.int64)
    # Each id straight to its place: a document's words, then its bigrams, in order
    values[offsets[parents] + position] = hashes % buckets + 1
    if bigrams and len(hashes) > 1:
        same = parents[1:] == parents[:-1]
        pair = (hashes[:-1][same] * BIGRAM_FACTOR + hashes[1:][same]) % (1 << 32)
        at = parents[1:][same]
        values[offsets[at] + kept[at] + position[1:][same] - 1] = pair % buckets + 1
    return Tokens(values, offsets, counts, kept)


def ngram_strings(words: Any, parents: np.ndarray, rows: np.ndarray) -> tuple[Any, np.ndarray]:
    """The unigrams and bigrams (words joined by one space) of the documents in `rows`, as
    strings, and their hashes: to keep a table of real n-grams beside the hashed ids."""
    chosen = np.isin(parents, rows)
    words, parents = arrow.compute("filter", words, pa.array(chosen)), parents[chosen]
    hashes = word_hashes(words)
    same = parents[1:] == parents[:-1]
    left = arrow.compute("filter", words.slice(0, max(len(words) - 1, 0)), pa.array(same))
    right = arrow.compute("filter", words.slice(1), pa.array(same))
    pairs = arrow.compute(
        "binary_join_element_wise", left, right, pa.scalar(" "), options=JoinOptions()
    )
    pair_hashes = (hashes[:-1][same] * BIGRAM_FACTOR + hashes[1:][same]) % (1 << 32)
    return pa.concat_arrays([words, pairs.cast(pa.string())]), np.concatenate([hashes, pair_hashes])


def describe(buckets: int, max_words: int, bigrams: bool = True) -> dict[str, Any]:
    """The tokenizer as plain data, exactly (the sidecar of an export, a model file)."""
    return {
        "name": TOKENIZER,
        "lowercase": "Unicode (utf8proc, as Arrow's utf8_lower)",
        "words": "maximal runs of Unicode letters, marks, digits and _",
        "split_pattern": PATTERN,
        "max_words": max_words,
        "ngrams": [1, 2] if bigrams else [1],
        "hash": "crc32 of the UTF-8 bytes (zlib.crc32, initial value 0)",
        "bigram_hash": f"(hash(w1) * {BIGRAM_FACTOR} + hash(w2)) mod 2**32",
        "buckets": buckets,
        "id": "hash mod buckets + 1; 0 pads",
        "order": "the document's unigrams in order, then its bigrams in order",
    }
