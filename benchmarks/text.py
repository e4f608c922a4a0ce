"""torchwork on text against scikit-learn's TF-IDF + logistic regression, each a whole
process, on the same test rows, side by side in one run.

    python benchmarks/text.py [--sets fortunes,debian,generated,categories]
                              [--rows 200000] [--seed 42] [--work DIR]
                              [--skip-torchwork] [--skip-sklearn] [--sklearn-python PATH]
                              [--timeout 1800] [--out FILE]

Four datasets, written once into --work (default: torchwork-text-bench in the system's
temporary folder) and reused by later runs with the same --seed (and --rows):

- fortunes: real short texts by topic, a folder of class folders of .txt files. Debian's
  `fortunes` and `fortunes-min` packages (`apt-get install fortunes fortunes-min`) keep one
  file per topic in /usr/share/games/fortunes, fortunes separated by lines holding only `%`.
  Each fortune of at most 1,000 characters becomes one file (longer ones are stories and
  song texts); a fortune found twice is kept once, in the first topic by name; the topics
  with at least 150 fortunes left are the classes. The other fortunes-* packages hold other
  languages (a class that the language alone gives away), and Debian 12 has no
  fortunes-off. The folder is written in the train/ and test/ layout, 20% of each class in
  test/ (drawn with --seed), which torchwork uses as given: the test files are fixed on
  disk for both tools, instead of depending on how torchwork orders, rounds and shuffles
  the files of class folders it splits itself, and scikit-learn reads them as its users do
  (`sklearn.datasets.load_files` on each of the two folders).
- debian: a table with a free-text column beside other columns, from this machine's package
  lists: `apt-cache dumpavail` (Section, Installed-Size, Priority, Architecture, the short
  Description) and the long descriptions of apt's Translation-en lists, joined on
  Description-md5. Debian's docker images download no Translation-en: run `apt-get update
  -o Acquire::Languages=en` first (as root), or the descriptions are the short ones alone
  (the dataset line says so). Columns: description ("short. long" on one line),
  installed_size (KiB), priority, architecture, and the target section (the 15 most
  frequent, without a "contrib/" or "non-free/" prefix). The package's name is left out:
  it gives most sections away (python3-*, golang-*, lib*-dev).
- generated: --rows documents (`--rows 20000,200000,1000000` for a sweep) made with numpy
  from --seed: 20,000 made-up words drawn by Zipf's law (p ~ 1 / (rank + 2.7)), 5 to 60
  words a document, in 8 topics that come in 4 pairs. A pair's documents over-use 40 words
  of their own, and each topic 12 bigrams of common words whose reverses are its
  sibling's: the words of a bigram are as frequent in both siblings, only their order
  tells the two apart, so bigrams matter (scikit-learn on 20,000 documents: about 0.44 test
  accuracy with unigrams alone, 0.80 with bigrams). Columns: text and label.
- categories: the "13,000-category table": 30,000 rows, a text column of 13,000 distinct
  single tokens (cat_00000 ..., each at least once), two numeric columns, and one of 4
  labels that depends on the category (and a little on the numbers). The targets are at
  most 800 MB of peak memory and 20 s of wall time; scikit-learn's row is a reference
  (`OneHotEncoder(handle_unknown="ignore")` and `StandardScaler`, then the same
  LogisticRegression), not a target.

Each tool runs as its own process, timed from start to exit, as a user meets it:
- `torchwork run --data DATA --target COL --seed S --no-plots --out DIR --force`, every
  other setting the default; its test accuracy and training time are summary.json's;
- the scikit-learn script a practitioner writes: `pandas.read_csv` (or `load_files`),
  `TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)` on the text column,
  `OneHotEncoder(handle_unknown="ignore")` on the category columns and `StandardScaler` on
  the numbers (`make_column_transformer`), then `LogisticRegression(max_iter=2000)` (the
  L-BFGS iterations it took are printed: all sets converge in far fewer); fitted on every
  row that is not a test row, then it predicts the test rows.

Same rows: for a table, the test rows are those that torchwork's predictions.csv marks
"test"; where torchwork did not run (--skip-torchwork) or failed, they are
`torchwork.data.split_indices(rows, shuffle=True, seed=S)`'s, which is what a table run
calls (the last 20% of one seeded permutation, whatever the training and validation
fractions); the script says when the two disagree, or when the tools' test counts do. For
the folder, test/.

The table prints, for each dataset and tool: wall time, its ratio to scikit-learn's, the
training time (scikit-learn: `fit`, TF-IDF included), the process's peak memory (each
command measured from a fresh helper process, as `ru_maxrss` keeps only a process's largest
child), test accuracy, the share of the machine's cores that other processes took during
the run (from /proc/stat: on a shared machine, rerun when it is idle), and notes (what each
tool chose; a failed run: why). Then a verdict per dataset against the issue's targets:
test accuracy at least scikit-learn's - 0.01 and wall time at most scikit-learn's; for
categories, the memory and time limits.

The defaults take about 8 minutes on 2 cores, most of it scikit-learn's L-BFGS on debian
and generated; scikit-learn on 1,000,000 generated documents alone takes about 15 minutes
and 7.5 GB.

Requires scikit-learn and pandas for the scikit-learn side. This project's environment has
no pandas (pyarrow's conversions would import it, which torchwork's tables avoid), so give
that side its own:

    python3.11 -m venv /tmp/text-bench-venv
    /tmp/text-bench-venv/bin/pip install scikit-learn pandas pyarrow
    python benchmarks/text.py --sklearn-python /tmp/text-bench-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_report
from images import cpu_seconds

SETS = ("fortunes", "debian", "generated", "categories")
TFIDF = {"ngram_range": (1, 2), "sublinear_tf": True, "min_df": 2}
MAX_ITER = 2000  # L-BFGS iterations: enough for every set here to converge
ACCURACY_BAR = 0.01  # the target: at least scikit-learn's test accuracy minus this
CATEGORY_PEAK_MB = 800  # the targets for the 13,000-category table
CATEGORY_SECONDS = 20

FORTUNES = Path("/usr/share/games/fortunes")
FORTUNE_PACKAGES = ("fortunes", "fortunes-min")
MIN_FORTUNES = 150  # a topic with fewer is not a class
MAX_FORTUNE_CHARS = 1000  # longer ones are stories and song texts, not short texts
TEST_SHARE = 0.2  # of each class, in test/
SECTIONS = 15  # the most frequent Debian sections kept as classes
VOCABULARY = 20_000
TOPICS = ("arts", "business", "health", "politics", "science", "sport", "tech", "travel")
CATEGORIES, CATEGORY_ROWS = 13_000, 30_000
MEASURED = ("wall", "peak", "others")  # what measured() gives a result


@dataclass(frozen=True)
class Dataset:
    """One dataset on disk: a table (csv) or a folder in the train/ and test/ layout, the
    columns each side uses, and what it holds (for the report)."""

    name: str
    path: str
    target: str | None  # None: a folder, labelled by its class folders
    text: str | None = None  # the free-text column
    categories: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()
    rows: int = 0
    counts: tuple[tuple[str, int], ...] = ()  # rows of each class, most first
    about: str = ""

    def describe(self) -> str:
        per_class = ", ".join(f"{k} {n:,}" for k, n in self.counts)
        return (
            f"{self.name}: {self.rows:,} rows, {len(self.counts)} classes ({per_class}){self.about}"
        )


def _finished(path: Path, write) -> Dataset:
    """The dataset at `path`, written by `write(partial)` into a sibling first (so that an
    interrupted run leaves nothing half-written to be taken as the data), with its
    description kept beside it as JSON."""
    manifest = path.with_name(path.name + ".json")
    if path.exists() and manifest.exists():
        found = json.loads(manifest.read_text())
        return Dataset(**{**found, "counts": tuple(tuple(c) for c in found["counts"])})
    import shutil

    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.unlink(missing_ok=True)
    dataset: Dataset = write(partial)
    manifest.write_text(json.dumps(asdict(dataset)))
    partial.rename(path)
    return dataset


def _counts(labels) -> tuple[tuple[str, int], ...]:
    return tuple(Counter(labels).most_common())


# (a) fortunes: a folder of short texts by topic ---------------------------------------------


def read_fortunes(path: Path) -> list[str]:
    """The fortunes of one fortune file, each stripped, empty ones dropped."""
    text = path.read_text(encoding="utf-8", errors="replace")
    fortunes, lines = [], []
    for line in [*text.splitlines(), "%"]:
        if line.strip() == "%":
            fortunes.append("\n".join(lines).strip())
            lines = []
        else:
            lines.append(line)
    return [f for f in fortunes if f]


def fortune_files() -> list[Path]:
    """The fortune files of the fortunes and fortunes-min packages, by name (not those of
    other fortunes-* packages that may be installed beside them)."""
    listed = subprocess.run(["dpkg", "-L", *FORTUNE_PACKAGES], capture_output=True, text=True)
    if listed.returncode:
        raise SystemExit(
            f"{' and '.join(FORTUNE_PACKAGES)} are not installed: "
            f"apt-get install {' '.join(FORTUNE_PACKAGES)}"
        )
    files = {Path(line) for line in listed.stdout.splitlines()}
    return sorted(
        f
        for f in files
        if f.parent == FORTUNES and f.suffix != ".dat" and f.is_file() and not f.is_symlink()
    )


def make_fortunes(work: Path, seed: int) -> Dataset:
    path = work / f"fortunes-seed{seed}"

    def write(root: Path) -> Dataset:
        seen: set[str] = set()
        topics: dict[str, list[str]] = {}
        dropped_long = 0
        for file in fortune_files():
            kept = []
            for fortune in read_fortunes(file):
                if len(fortune) > MAX_FORTUNE_CHARS:
                    dropped_long += 1
                elif fortune not in seen:
                    seen.add(fortune)
                    kept.append(fortune)
            topics[file.name] = kept
        classes = {k: v for k, v in topics.items() if len(v) >= MIN_FORTUNES}
        rng = np.random.default_rng(seed)
        test_rows = 0
        for topic, fortunes in classes.items():
            order = rng.permutation(len(fortunes))
            n_test = round(TEST_SHARE * len(fortunes))
            test_rows += n_test
            for rank, i in enumerate(order):
                folder = root / ("test" if rank < n_test else "train") / topic
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{i:05d}.txt").write_text(fortunes[i] + "\n", encoding="utf-8")
        rows = sum(len(v) for v in classes.values())
        left_out = sorted(set(topics) - set(classes))
        about = (
            f"; train {rows - test_rows:,}, test {test_rows:,}; {dropped_long} fortunes over "
            f"{MAX_FORTUNE_CHARS} characters dropped; topics under {MIN_FORTUNES}: "
            + ", ".join(left_out)
        )
        counts = tuple(sorted(((k, len(v)) for k, v in classes.items()), key=lambda c: -c[1]))
        return Dataset("fortunes", str(path), None, rows=rows, counts=counts, about=about)

    return _finished(path, write)


# (b) debian: package descriptions beside other columns -------------------------------------


def deb822(text: str) -> list[dict[str, str]]:
    """Debian control records ("Field: value" lines, continuation lines starting with a
    space), one dict a record; a continued value keeps its lines joined by newlines."""
    records = []
    for block in text.split("\n\n"):
        record: dict[str, str] = {}
        field = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and field:
                record[field] += "\n" + line
            elif ":" in line:
                field, _, value = line.partition(":")
                record[field] = value.strip()
        if record:
            records.append(record)
    return records


def one_line(description: str) -> str:
    """A Debian description (short line, then long lines with " ." for blank lines) as one
    line of text: "short. long"."""
    short, *long = [line.strip() for line in description.splitlines()] or [""]
    return ". ".join(filter(None, [short, " ".join(w for w in long if w and w != ".")]))


def long_descriptions() -> dict[str, str]:
    """Description-md5 -> the full English description, from apt's Translation-en lists."""
    found: dict[str, str] = {}
    for path in sorted(Path("/var/lib/apt/lists").glob("*_i18n_Translation-en*")):
        text = subprocess.run(
            ["/usr/lib/apt/apt-helper", "cat-file", str(path)],
            capture_output=True,
            check=True,
        ).stdout.decode("utf-8", errors="replace")
        for record in deb822(text):
            if "Description-md5" in record and "Description-en" in record:
                found[record["Description-md5"]] = record["Description-en"]
    return found


def make_debian(work: Path) -> Dataset:
    path = work / "debian.csv"

    def write(partial: Path) -> Dataset:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        packages = subprocess.run(
            ["apt-cache", "dumpavail"], capture_output=True, check=True
        ).stdout.decode("utf-8", errors="replace")
        full = long_descriptions()
        rows = []
        with_long = 0
        for record in deb822(packages):
            if "Package" not in record or "Section" not in record:
                continue
            description = record.get("Description", "")
            if "\n" not in description and record.get("Description-md5") in full:
                description = full[record["Description-md5"]]
            with_long += "\n" in description
            rows.append(
                {
                    "description": one_line(description),
                    "installed_size": int(record.get("Installed-Size", "0") or 0),
                    "priority": record.get("Priority", "optional"),
                    "architecture": record.get("Architecture", "all"),
                    "section": record["Section"].rsplit("/", 1)[-1],
                }
            )
        kept = {s for s, _ in Counter(r["section"] for r in rows).most_common(SECTIONS)}
        share = with_long / len(rows)
        rows = [r for r in rows if r["section"] in kept]
        columns = {name: [r[name] for r in rows] for name in rows[0]}
        pcsv.write_csv(pa.table(columns), partial)
        words = np.mean([len(d.split()) for d in columns["description"]])
        about = (
            f"; {share:.0%} of the packages with a long description"
            f"{'' if full else ' (no Translation-en: see the docstring)'}, "
            f"{words:.0f} words a description on average"
        )
        return Dataset(
            "debian",
            str(path),
            "section",
            text="description",
            categories=("priority", "architecture"),
            numbers=("installed_size",),
            rows=len(rows),
            counts=_counts(columns["section"]),
            about=about,
        )

    return _finished(path, write)


# (c) generated documents -------------------------------------------------------------------


class Topics:
    """The generator of (c), fixed by its seed: the vocabulary, its Zipf probabilities, each
    pair's words and each topic's bigrams."""

    PAIR_WORDS = 40  # words a pair of topics over-uses
    BIGRAMS = 12  # bigrams a topic over-uses (its sibling uses their reverses)
    P_WORD, P_BIGRAM = 0.06, 0.05  # the chance that a word is a pair word / starts a bigram

    def __init__(self, seed: int):
        rng = np.random.default_rng(seed)
        syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
        words: dict[str, None] = {}
        while len(words) < VOCABULARY:
            parts = rng.integers(0, len(syllables), (VOCABULARY, 3))
            sizes = rng.integers(1, 4, VOCABULARY)
            for row, size in zip(parts, sizes, strict=True):
                words["".join(syllables[p] for p in row[:size])] = None
        self.words = list(words)[:VOCABULARY]  # in rank order: the first is the most frequent
        weights = 1 / (np.arange(VOCABULARY) + 2.7)
        self.cdf = np.cumsum(weights / weights.sum())
        pairs = len(TOPICS) // 2
        chosen = rng.choice(np.arange(300, 6000), pairs * self.PAIR_WORDS, replace=False)
        self.pair_words = chosen.reshape(pairs, self.PAIR_WORDS)
        pool = np.arange(20, 120)  # common words: frequent in every topic by themselves
        self.bigrams = np.zeros((len(TOPICS), self.BIGRAMS, 2), dtype=np.int64)
        for pair in range(pairs):
            first = np.stack([rng.choice(pool, 2, replace=False) for _ in range(self.BIGRAMS)])
            self.bigrams[2 * pair], self.bigrams[2 * pair + 1] = first, first[:, ::-1]

    def documents(
        self, rows: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tokens, lengths, labels): the word ids of `rows` documents one after another."""
        lengths = rng.integers(5, 61, rows)
        labels = rng.integers(0, len(TOPICS), rows)
        total = int(lengths.sum())
        doc = np.repeat(np.arange(rows), lengths)
        tokens = np.minimum(np.searchsorted(self.cdf, rng.random(total)), VOCABULARY - 1)
        draw = rng.random(total)
        is_word = draw < self.P_WORD
        tokens[is_word] = self.pair_words[
            labels[doc[is_word]] // 2, rng.integers(0, self.PAIR_WORDS, int(is_word.sum()))
        ]
        last = np.zeros(total, dtype=bool)
        last[np.cumsum(lengths) - 1] = True
        starts = np.flatnonzero(
            (draw >= self.P_WORD) & (draw < self.P_WORD + self.P_BIGRAM) & ~last
        )
        pick = self.bigrams[labels[doc[starts]], rng.integers(0, self.BIGRAMS, len(starts))]
        tokens[starts], tokens[starts + 1] = pick[:, 0], pick[:, 1]
        return tokens, lengths, labels

    def texts(self, tokens: np.ndarray, lengths: np.ndarray):
        """The documents as one Arrow string array, words joined by spaces, built from
        buffers (a Python string a document would take longer than the rest)."""
        import pyarrow as pa

        encoded = [w.encode() for w in self.words]
        # entry i: word i and a space; entry VOCABULARY + i: word i alone, a document's last
        pieces = np.frombuffer(b"".join([w + b" " for w in encoded] + encoded), dtype=np.uint8)
        size = np.array([len(w) + 1 for w in encoded] + [len(w) for w in encoded])
        start = np.cumsum(size) - size
        ends = np.cumsum(lengths) - 1
        entries = tokens.copy()
        entries[ends] += VOCABULARY
        sizes = size[entries]
        placed = np.cumsum(sizes) - sizes
        data = pieces[np.repeat(start[entries] - placed, sizes) + np.arange(int(sizes.sum()))]
        offsets = np.concatenate([[0], np.cumsum(sizes)[ends]]).astype(np.int32)
        return pa.StringArray.from_buffers(
            len(lengths), pa.py_buffer(offsets), pa.py_buffer(data.tobytes())
        )


def make_generated(work: Path, rows: int, seed: int) -> Dataset:
    path = work / f"generated-{rows}-seed{seed}.csv"

    def write(partial: Path) -> Dataset:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        topics = Topics(seed)
        rng = np.random.default_rng([seed, rows])
        schema = pa.schema([("text", pa.string()), ("label", pa.string())])
        counts = np.zeros(len(TOPICS), dtype=np.int64)
        words = 0
        with pcsv.CSVWriter(partial, schema) as writer:
            for first in range(0, rows, 100_000):
                tokens, lengths, labels = topics.documents(min(100_000, rows - first), rng)
                names = pa.array(np.array(TOPICS)[labels])
                writer.write_table(pa.table([topics.texts(tokens, lengths), names], schema=schema))
                counts += np.bincount(labels, minlength=len(TOPICS))
                words += int(lengths.sum())
        return Dataset(
            "generated",
            str(path),
            "label",
            text="text",
            rows=rows,
            counts=tuple(sorted(zip(TOPICS, counts.tolist(), strict=True), key=lambda c: -c[1])),
            about=f"; {words / rows:.1f} words a document, {partial.stat().st_size / 1e6:.1f} MB",
        )

    return _finished(path, write)


# (d) the 13,000-category table ---------------------------------------------------------------


def make_categories(work: Path, seed: int) -> Dataset:
    path = work / f"categories-seed{seed}.csv"

    def write(partial: Path) -> Dataset:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        rng = np.random.default_rng(seed)
        category = np.concatenate(
            [np.arange(CATEGORIES), rng.integers(0, CATEGORIES, CATEGORY_ROWS - CATEGORIES)]
        )
        rng.shuffle(category)
        label_of = rng.integers(0, 4, CATEGORIES)  # each category leans to one label
        x = rng.normal(size=(CATEGORY_ROWS, 2))
        logits = 3.0 * np.eye(4)[label_of[category]] + x @ rng.normal(size=(2, 4))
        names = np.array(["north", "east", "south", "west"])
        label = names[(logits + rng.gumbel(size=logits.shape)).argmax(1)]
        columns = {
            "category": [f"cat_{c:05d}" for c in category],
            "price": np.round(x[:, 0] * 12.5 + 40, 2),
            "weight": np.round(x[:, 1] * 0.8 + 3, 3),
            "label": label,
        }
        pcsv.write_csv(pa.table(columns), partial)
        return Dataset(
            "categories",
            str(path),
            "label",
            categories=("category",),
            numbers=("price", "weight"),
            rows=CATEGORY_ROWS,
            counts=_counts(label.tolist()),
            about=f"; {len(np.unique(category)):,} distinct categories",
        )

    return _finished(path, write)


def build(name: str, rows: int, seed: int, work: Path) -> Dataset:
    if name == "fortunes":
        return make_fortunes(work, seed)
    if name == "debian":
        return make_debian(work)
    if name == "generated":
        return make_generated(work, rows, seed)
    return make_categories(work, seed)


# The scikit-learn side, a process of its own ---------------------------------------------


def child_sklearn(spec: str) -> dict:
    """The script a practitioner writes: read, fit on the training rows, predict the test
    rows. `spec`: the dataset as JSON, with the test rows' file (tables)."""
    started = time.perf_counter()
    from sklearn.compose import make_column_transformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    d = json.loads(spec)
    model = LogisticRegression(max_iter=MAX_ITER)
    if d["target"] is None:  # a folder: train/ and test/
        from sklearn.datasets import load_files

        train = load_files(Path(d["path"]) / "train", encoding="utf-8", decode_error="replace")
        test = load_files(Path(d["path"]) / "test", encoding="utf-8", decode_error="replace")
        X_train, y_train = train.data, np.array(train.target_names)[train.target]
        X_test, y_test = test.data, np.array(test.target_names)[test.target]
        pipeline = make_pipeline(TfidfVectorizer(**TFIDF), model)
    else:
        import pandas as pd

        frame = pd.read_csv(d["path"])
        y = frame.pop(d["target"])
        if d["text"]:
            frame[d["text"]] = frame[d["text"]].fillna("")  # an empty text is no NaN to it
        test_rows = np.load(d["test_rows"])
        train_rows = np.setdiff1d(np.arange(len(frame)), test_rows)
        X_train, y_train = frame.iloc[train_rows], y.iloc[train_rows]
        X_test, y_test = frame.iloc[test_rows], y.iloc[test_rows]
        parts = []
        if d["text"]:
            parts.append((TfidfVectorizer(**TFIDF), d["text"]))
        if d["categories"]:
            parts.append((OneHotEncoder(handle_unknown="ignore"), list(d["categories"])))
        if d["numbers"]:
            parts.append((StandardScaler(), list(d["numbers"])))
        pipeline = make_pipeline(make_column_transformer(*parts), model)
    read = time.perf_counter() - started
    fit_started = time.perf_counter()
    pipeline.fit(X_train, y_train)
    fit = time.perf_counter() - fit_started
    accuracy = accuracy_score(y_test, pipeline.predict(X_test))
    return {
        "read_s": read,
        "train_s": fit,
        "accuracy": float(accuracy),
        "iterations": int(np.max(model.n_iter_)),
        "features": int(model.coef_.shape[1]),
        "train_rows": len(y_train),
        "test_rows": len(y_test),
        "inside_s": time.perf_counter() - started,
    }


# Measuring whole processes ----------------------------------------------------------------


def measured(command: list[str], cwd: Path, timeout: float) -> dict:
    """Wall seconds, peak memory (MB), exit code and output of one process, run from a fresh
    helper process: a process's largest child is all that ru_maxrss keeps, so each command
    gets a parent of its own. A failure is returned, not raised: it is a result here. Also
    the share of the machine's cores that other processes took meanwhile ("others")."""
    helper = (
        "import json, subprocess, sys, time, resource\n"
        "t = time.perf_counter()\n"
        "try:\n"
        "    p = subprocess.run(sys.argv[2:], capture_output=True, text=True,"
        " timeout=float(sys.argv[1]))\n"
        "    code, out, err = p.returncode, p.stdout, p.stderr\n"
        "except subprocess.TimeoutExpired:\n"
        "    code, out, err = -1, '', f'stopped after {sys.argv[1]} s (--timeout)'\n"
        "wall = time.perf_counter() - t\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps({'wall': wall, 'peak': peak, 'code': code, "
        "'out': out[-20000:], 'err': err[-5000:]}))\n"
    )
    before, started = cpu_seconds(), time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", helper, str(timeout), *command],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    answer = json.loads(result.stdout)
    answer["others"] = others_share(before, cpu_seconds(), time.perf_counter() - started)
    return answer


def others_share(before, after, seconds: float) -> float | None:
    """The share of this machine's cores that processes other than this script's used
    between two cpu_seconds() readings `seconds` apart (None without /proc/stat)."""
    if not (before and after):
        return None
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, others) / (seconds * (os.cpu_count() or 1))


def why_failed(answer: dict) -> str:
    """The last line a failed process printed: torchwork prints its error there."""
    for stream in (answer["err"], answer["out"]):
        lines = [line.strip() for line in stream.splitlines() if line.strip()]
        if lines:
            return f"exit {answer['code']}: {lines[-1]}"
    return f"exit {answer['code']}, no output"


def run_notes(out: Path, summary: dict) -> str:
    """What a torchwork run chose: model, optimizer, epochs, inputs and rows."""
    import tomllib

    config = tomllib.loads((out / "config.toml").read_text())
    training = summary.get("training") or {}
    inputs = len(summary.get("data", {}).get("inputs", []))
    rows = ", ".join(f"{k} {v:,}" for k, v in summary["rows"].items())
    return (
        f"{config['model']['kind']}, {training.get('optimizer', '?')}, "
        f"{summary['epochs_run']} epochs, {inputs:,} inputs, {rows}"
    )


def run_torchwork(data: Dataset, seed: int, runs: Path, timeout: float) -> dict:
    out = runs / f"torchwork-{Path(data.path).name}"
    command = [sys.executable, "-m", "torchwork", "run", "--data", data.path]
    if data.target:
        command += ["--target", data.target]
    command += ["--seed", str(seed), "--no-plots", "--out", str(out), "--force"]
    answer = measured(command, runs, timeout)
    found = {"tool": "torchwork", "out": out, **{k: answer[k] for k in MEASURED}}
    if answer["code"] != 0:
        return found | {"failed": why_failed(answer)}
    try:
        summary = json.loads((out / "summary.json").read_text())
        return found | {
            "accuracy": summary["metrics"]["test"]["accuracy"],
            "train_s": summary["seconds"],
            "notes": run_notes(out, summary),
            "test_rows": summary["rows"].get("test"),
        }
    except (OSError, KeyError, ValueError) as e:
        return found | {"failed": f"no result in {out}: {type(e).__name__}: {e}"}


def table_test_rows(
    data: Dataset, torchwork: dict | None, seed: int, runs: Path
) -> tuple[Path, str]:
    """The test rows of a table as a .npy file, and where they came from: torchwork's
    predictions.csv when it has one, else split_indices as a table run calls it."""
    from torchwork.data import split_indices

    expected = np.sort(split_indices(data.rows, shuffle=True, seed=seed)[2].numpy())
    rows, source = expected, f"split_indices(seed={seed})"
    predictions = torchwork["out"] / "predictions.csv" if torchwork else None
    if torchwork and "failed" not in torchwork and predictions.exists():
        import pyarrow.csv as pcsv

        split = np.array(pcsv.read_csv(predictions).column("split").to_pylist())
        rows, source = np.flatnonzero(split == "test"), "torchwork's predictions.csv"
        if len(split) != data.rows or not np.array_equal(rows, expected):
            print(f"   {data.name}: predictions.csv's test rows are not split_indices': using them")
    path = runs / f"test-{Path(data.path).stem}.npy"
    np.save(path, rows)
    return path, source


def check_sklearn_python(python: str) -> None:
    """Stop before any work when the scikit-learn side's Python lacks what it imports."""
    found = subprocess.run([python, "-c", "import sklearn, pandas"], capture_output=True, text=True)
    if found.returncode:
        last = found.stderr.strip().splitlines()[-1:] or ["it does not run"]
        raise SystemExit(
            f"{python} cannot run the scikit-learn side ({last[0]}): give --sklearn-python "
            "a Python with scikit-learn and pandas (see the docstring), or --skip-sklearn"
        )


def run_sklearn(data: Dataset, rows: Path | None, python: str, runs: Path, timeout: float) -> dict:
    spec = json.dumps({**asdict(data), "test_rows": str(rows) if rows else None})
    answer = measured([python, __file__, "--child", spec], runs, timeout)
    found = {"tool": "scikit-learn", **{k: answer[k] for k in MEASURED}}
    if answer["code"] != 0:
        return found | {"failed": why_failed(answer)}
    inside = json.loads(answer["out"].strip().splitlines()[-1])
    converged = "" if inside["iterations"] < MAX_ITER else " (not converged)"
    return found | {
        "accuracy": inside["accuracy"],
        "train_s": inside["train_s"],
        "test_rows": inside["test_rows"],
        "notes": f"{inside['features']:,} features, {inside['iterations']} L-BFGS iterations"
        f"{converged}, train {inside['train_rows']:,}, test {inside['test_rows']:,}",
    }


# The report ---------------------------------------------------------------------------------


def verdict(label: str, name: str, torchwork: dict | None, sklearn: dict | None) -> str:
    """One line: whether torchwork met the issue's targets on this dataset, and by how much."""
    if torchwork is None:
        return f"- {label}: torchwork not run"
    if "failed" in torchwork:
        return f"- {label}: MISSED: torchwork failed ({torchwork['failed']})"
    reference = sklearn if sklearn and "failed" not in sklearn else None
    tw_accuracy, tw_wall = torchwork["accuracy"], torchwork["wall"]
    if name == "categories":
        checks = {
            f"peak {torchwork['peak']:.0f} MB (at most {CATEGORY_PEAK_MB})": torchwork["peak"]
            <= CATEGORY_PEAK_MB,
            f"wall {tw_wall:.1f} s (at most {CATEGORY_SECONDS})": tw_wall <= CATEGORY_SECONDS,
        }
        after = f"; accuracy {tw_accuracy:.4f}" + (
            f", scikit-learn's one-hot reference {reference['accuracy']:.4f}" if reference else ""
        )
    elif reference is None:
        return f"- {label}: no scikit-learn result to compare with"
    else:
        gap, ratio = tw_accuracy - reference["accuracy"], tw_wall / reference["wall"]
        checks = {
            f"accuracy {tw_accuracy:.4f} against {reference['accuracy']:.4f} ({gap:+.4f}, "
            f"at least -{ACCURACY_BAR})": gap >= -ACCURACY_BAR - 1e-9,
            f"wall {ratio:.2f}x scikit-learn's (at most 1x)": ratio <= 1,
        }
        after = ""
    met = all(checks.values())
    parts = ", ".join(f"{text}: {'met' if ok else 'missed'}" for text, ok in checks.items())
    return f"- {label}: {'MET' if met else 'MISSED'}: {parts}{after}"


def table_rows(label: str, results: list[dict]) -> list[list[str]]:
    sklearn = next((r for r in results if r["tool"] == "scikit-learn" and "failed" not in r), None)
    rows = []
    for r in results:
        failed = "failed" in r
        ratio = f"{r['wall'] / sklearn['wall']:.2f}x" if sklearn and not failed else "-"
        rows.append(
            [
                label,
                r["tool"],
                f"{r['wall']:.2f} s",
                ratio,
                "-" if failed else f"{r['train_s']:.2f} s",
                f"{r['peak']:.0f} MB",
                "-" if failed else f"{r['accuracy']:.4f}",
                "-" if r["others"] is None else f"{r['others']:.0%}",
                (r["failed"] if failed else r["notes"]).replace("|", "/"),  # a cell, not columns
            ]
        )
    return rows


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(child_sklearn(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS), help=f"some of {', '.join(SETS)}")
    parser.add_argument("--rows", default="200000", help="documents of the generated set: N,N,...")
    parser.add_argument("--seed", type=int, default=42, help="data, and torchwork's --seed")
    parser.add_argument(
        "--work",
        default=str(Path(tempfile.gettempdir()) / "torchwork-text-bench"),
        help="the datasets (kept for later runs) and the run folders",
    )
    parser.add_argument("--skip-torchwork", action="store_true")
    parser.add_argument("--skip-sklearn", action="store_true")
    parser.add_argument(
        "--sklearn-python",
        default=sys.executable,
        help="the Python of the scikit-learn side: one with scikit-learn and pandas",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a process may run")
    parser.add_argument("--out", help="also write the table to this Markdown file")
    args = parser.parse_args()
    if not args.skip_sklearn:
        check_sklearn_python(args.sklearn_python)
    started, cpu_before = time.perf_counter(), cpu_seconds()
    work = Path(args.work)
    runs = work / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    jobs = []
    for name in args.sets.split(","):
        if name not in SETS:
            raise SystemExit(f"--sets: {name} is not one of {', '.join(SETS)}")
        sizes = [int(n) for n in args.rows.split(",")] if name == "generated" else [0]
        jobs += [(name, rows) for rows in sizes]
    table, verdicts, described = [], [], []
    for name, rows in jobs:
        data = build(name, rows, args.seed, work)
        described.append(data.describe())
        print(data.describe(), flush=True)
        label = f"{name}, {data.rows:,} rows" if name == "generated" else name
        torchwork = (
            None if args.skip_torchwork else run_torchwork(data, args.seed, runs, args.timeout)
        )
        rows_file, source = (
            (None, "test/")
            if data.target is None
            else table_test_rows(data, torchwork, args.seed, runs)
        )
        sklearn = None
        if not args.skip_sklearn:
            sklearn = run_sklearn(data, rows_file, args.sklearn_python, runs, args.timeout)
        results = [r for r in (torchwork, sklearn) if r is not None]
        table += table_rows(label, results)
        tested = {r["tool"]: r["test_rows"] for r in results if r.get("test_rows") is not None}
        if len(set(tested.values())) > 1:
            source += f"; NOT THE SAME: {tested}"
        verdicts.append(verdict(label, name, torchwork, sklearn) + f" (test rows: {source})")
        for r in results:
            shown = r.get("failed") or f"accuracy {r['accuracy']:.4f}"
            print(f"   {r['tool']}: {r['wall']:.2f} s, {r['peak']:.0f} MB, {shown}", flush=True)
    idle = measured([sys.executable, "-c", "import torch"], runs, args.timeout)["peak"]
    others = others_share(cpu_before, cpu_seconds(), time.perf_counter() - started)
    header = [
        "dataset",
        "tool",
        "wall",
        "wall / scikit-learn",
        "training",
        "peak memory",
        "test accuracy",
        "others' CPU",
        "notes",
    ]
    notes = [
        "Datasets:",
        *[f"- {d}" for d in described],
        "",
        f"Idle `import torch`: {idle:.0f} MB. Verdicts (the issue's targets):",
        *verdicts,
    ]
    if others is not None:
        notes += [
            "",
            f"Other processes took {others:.0%} of this machine's {os.cpu_count()} cores while "
            'it ran ("others\' CPU": during each run)'
            + (": the timings are disturbed by them." if others > 0.05 else "."),
        ]
    print_report(
        f"torchwork text benchmark, seed {args.seed}", header, table, started, args.out, notes
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
