"""Step 1, getting data ready: make the line, make a wider table, split it, batch it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from torchwork.config import SPLITS, config_kinds
from torchwork.errors import ConfigError, DataError, TorchworkError
from torchwork.registry import Task

if TYPE_CHECKING:
    from torchwork.config import RunConfig
    from torchwork.kinds.encoder import Encoder


def make_line(
    weight: float = 0.7,
    bias: float = 0.3,
    start: float = 0.0,
    end: float = 1.0,
    step: float = 0.02,
    noise: float = 0.0,
    seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A straight line with known parameters, exactly as the course makes it.

    >>> X, y = make_line()
    >>> X.shape, y.shape
    (torch.Size([50, 1]), torch.Size([50, 1]))

    `noise` adds Gaussian noise of that standard deviation to y, drawn from a generator
    seeded with `seed` (the global random state is left alone).
    """
    if step <= 0:
        raise ConfigError(f"step must be greater than 0 (got {step})")
    if start >= end:
        raise ConfigError(f"start ({start}) must be less than end ({end})")
    X = torch.arange(start, end, step).unsqueeze(dim=1)
    y = weight * X + bias
    if noise > 0:
        y = y + noise * torch.randn(y.shape, generator=_generator(seed))
    return X, y


def make_regression(
    rows: int = 1000,
    weights: list[float] | tuple[float, ...] = (1.0, -2.0, 0.5),
    bias: float = 0.0,
    noise: float = 0.0,
    seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of standard-normal features with y = X @ weights + bias (+ Gaussian noise).

    >>> X, y = make_regression(rows=100, weights=[2.0, -1.0], bias=0.5, noise=0.1, seed=0)
    >>> X.shape, y.shape
    (torch.Size([100, 2]), torch.Size([100, 1]))
    """
    if rows < 1:
        raise ConfigError(f"rows must be at least 1 (got {rows})")
    if len(weights) < 1:
        raise ConfigError("weights must name at least one feature weight")
    g = _generator(seed)
    w = torch.tensor(list(weights), dtype=torch.float32).unsqueeze(1)
    X = torch.randn(rows, len(w), generator=g)
    y = X @ w + bias
    if noise > 0:
        y = y + noise * torch.randn(y.shape, generator=g)
    return X, y


class Splits(NamedTuple):
    """Training, validation and testing rows; the validation tensors have 0 rows when unused."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor


def split_sizes(
    rows: int, train: float = 0.8, val: float = 0.0, test: float = 0.2
) -> tuple[int, int, int]:
    """Row counts for each split: int(fraction * rows) like the course, and the rows left
    when the fractions add up to 1 to the test split (course) or, with a validation split,
    to the training split: the test split's size then depends on the test fraction alone,
    so runs that hold out different validation rows are scored on the same test rows."""
    for name, value in (("train", train), ("val", val), ("test", test)):
        if not 0 <= value <= 1:
            raise ConfigError(f"the {name} fraction must be between 0 and 1 (got {value})")
    total = train + val + test
    if total > 1 + 1e-9:
        raise ConfigError(
            f"the split fractions add up to {total:g}, more than 1: lower train, val or test"
        )
    # The epsilon keeps int() from rounding 0.29 * 100 = 28.999... down to 28.
    n_val = int(val * rows + 1e-9)
    if total > 1 - 1e-9:
        n_test = rows - int((train + val) * rows + 1e-9)
        n_train = rows - n_val - n_test
    else:
        n_train, n_test = int(train * rows + 1e-9), int(test * rows + 1e-9)
    if n_train < 1:
        raise ConfigError(
            f"the training split would be empty ({rows} rows x {train:g}): add rows or raise --train"
        )
    if test > 0 and n_test < 1:
        raise ConfigError(
            f"the test split would be empty ({rows} rows x {test:g}): add rows or raise --test"
        )
    if val > 0 and n_val < 1:
        raise ConfigError(
            f"the validation split would be empty ({rows} rows x {val:g}): add rows or raise --val"
        )
    return n_train, n_val, n_test


def split(
    X: torch.Tensor,
    y: torch.Tensor,
    train: float = 0.8,
    val: float = 0.0,
    test: float = 0.2,
    shuffle: bool = False,
    seed: int | None = None,
) -> Splits:
    """Split rows into training, validation and testing sets.

    In order by default, exactly like the course (`int(0.8 * len(X))` training rows, then
    the rest for testing); with `shuffle=True` the rows are permuted by a seeded generator
    first.

    >>> X, y = make_line()
    >>> s = split(X, y)
    >>> len(s.X_train), len(s.X_val), len(s.X_test)
    (40, 0, 10)
    """
    if len(X) != len(y):
        raise DataError(f"X has {len(X)} rows but y has {len(y)}: they must match")
    train_rows, val_rows, test_rows = split_indices(len(X), train, val, test, shuffle, seed)
    if not shuffle:
        # Slices, exactly like the course's X[:train_split].
        a, b = len(train_rows), len(train_rows) + len(val_rows)
        c = len(X) - len(test_rows)
        return Splits(X[:a], y[:a], X[a:b], y[a:b], X[c:], y[c:])
    return Splits(
        X[train_rows], y[train_rows], X[val_rows], y[val_rows], X[test_rows], y[test_rows]
    )


def split_indices(
    rows: int,
    train: float = 0.8,
    val: float = 0.0,
    test: float = 0.2,
    shuffle: bool = False,
    seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The row numbers of each split, as `split` takes them (for tables: fit scaling on the
    training rows before encoding). The test rows are the last of the (shuffled) order:
    with the same seed, the same rows whatever the training and validation fractions."""
    n_train, n_val, n_test = split_sizes(rows, train, val, test)
    order = torch.randperm(rows, generator=_generator(seed)) if shuffle else torch.arange(rows)
    a, b = n_train, n_train + n_val
    return order[:a], order[a:b], order[rows - n_test :]


def batches(
    X: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 0,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (X, y) minibatches; the whole set at once when batch_size is 0 or covers it.

    With a generator the rows are visited in a new random order (one permutation per call),
    every row exactly once. No per-row objects: each batch is gathered from the tensors with
    one index. On the CPU, large sets gather the next rows in a background thread while the
    current batches train (the order and values are the same either way).
    """
    rows = len(X)
    if batch_size <= 0 or batch_size >= rows:
        yield X, y
        return
    if generator is None:
        for i in range(0, rows, batch_size):
            yield X[i : i + batch_size], y[i : i + batch_size]
        return
    order = torch.randperm(rows, generator=generator)
    if prefetches(X, batch_size, generator):
        yield from _prefetched(X, y, order, batch_size)
        return
    order = order.to(X.device)
    for i in range(0, rows, batch_size):
        index = order[i : i + batch_size]
        yield X[index], y[index]


def prefetches(X: torch.Tensor, batch_size: int, generator: torch.Generator | None) -> bool:
    """Whether `batches` gathers shuffled rows on a background thread: on the CPU, for sets
    of at least 4 * PREFETCH_ROWS rows. That thread keeps a core busy: see fit."""
    return (
        generator is not None
        and 0 < batch_size < len(X)
        and X.device.type == "cpu"
        and len(X) >= 4 * PREFETCH_ROWS
    )


PREFETCH_ROWS = 65536  # rows gathered per background task: measured best of 16k and 64k
EVAL_ROWS = 65536  # rows evaluated at a time: 16 MB of activations per 64-wide layer
EXAMPLES = 200  # test rows kept as a person reads them, to show beside the model's mistakes


def evaluation_batches(
    X: Any, y: torch.Tensor, rows: int = EVAL_ROWS
) -> list[tuple[Any, torch.Tensor]]:
    """A split in chunks of `rows` (a model's `eval_rows`: fewer for pictures) for
    test_step: an MLP's activations for 400,000 rows at once took 400 MB; in chunks, 16 MB a
    layer. Up to EVAL_ROWS rows are one chunk, as the course evaluates its 10 test rows at
    once."""
    return [(X[i : i + rows], y[i : i + rows]) for i in range(0, len(X), rows)]


def _prefetched(
    X: torch.Tensor, y: torch.Tensor, order: torch.Tensor, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    # Random rows cost memory latency to gather; doing it for the next chunk while this
    # chunk trains hides that cost on a second core. Two chunks exist at a time, at most.
    chunk = max(1, PREFETCH_ROWS // batch_size) * batch_size
    starts = list(range(0, len(X), chunk))

    def gather(start: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = order[start : start + chunk]
        return X.index_select(0, index), y.index_select(0, index)

    pool = _prefetch_pool()
    pending = pool.submit(gather, starts[0])
    for k in range(len(starts)):
        X_chunk, y_chunk = pending.result()
        if k + 1 < len(starts):
            pending = pool.submit(gather, starts[k + 1])
        for i in range(0, len(X_chunk), batch_size):
            yield X_chunk[i : i + batch_size], y_chunk[i : i + batch_size]


_POOL = None


def _prefetch_pool():
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torchwork-prefetch")
    return _POOL


def read_features(path: str | Path) -> torch.Tensor:
    """Read a table of numeric feature columns (.csv with a header row, or .npy) as float32."""
    import numpy as np

    path = Path(path)
    if not path.exists():
        raise DataError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DataError(f"cannot read {path} as a NumPy .npy file: {e}") from None
    elif suffix in (".csv", ".tsv"):
        from torchwork.tables.check import require_numbers
        from torchwork.tables.convert import table_to_tensor
        from torchwork.tables.read import read_table

        table = read_table(path)
        table = require_numbers(table, table.column_names, str(path))
        return table_to_tensor(table, table.column_names)
    else:
        raise DataError(f"cannot read {path}: use a .csv, .tsv or .npy file")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] == 0:
        raise DataError(f"{path} must hold a non-empty table of rows (got shape {array.shape})")
    if not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{path} must hold numbers (got {array.dtype})")
    array = array.astype("float32")
    if not np.isfinite(array).all():
        raise DataError(f"{path} has NaN or infinite values: fix or remove those rows")
    return torch.from_numpy(np.ascontiguousarray(array))


def _generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g


@dataclass
class Prepared:
    """Step 1's result: the rows of each split, encoded, and where they came from."""

    X: dict[str, Any]  # split name -> model inputs (a tensor for the line; Inputs otherwise)
    y: dict[str, torch.Tensor]  # split name -> the target as the loss function wants it
    y_raw: dict[str, torch.Tensor]  # regression: in the target's units [rows, 1]; else classes
    rows: dict[str, torch.Tensor]  # split name -> row numbers in the source
    task: Task
    description: str
    encoder: Encoder | None = None  # None for the line
    target: Any = None  # tables: the target column as read, for predictions.csv
    x_plot: dict[str, torch.Tensor] | None = None  # the one raw feature for the course's picture
    true: dict[str, float] | None = None  # the line's known parameters
    source_rows: int = 0  # rows in the source, every split and any unused ones
    table: Any = None  # the table itself, when prepare_data was asked to keep it
    files: list[str] | None = None  # a folder: each row's file, relative to the folder
    folder: bool = False  # the data is a folder of class folders (the table it stands for)
    # the first EXAMPLES test rows' columns as a person reads them (a text's start), by column
    examples: dict[str, list[str]] | None = None
    # what --dropna dropped: {"rows": N, "of": rows read, "columns": {column: empty cells}}
    dropped: dict[str, Any] | None = None
    missing: dict[str, int] | None = None  # feature column -> its empty cells, kept

    @property
    def labels(self) -> list[Any]:
        return self.encoder.labels if self.encoder is not None else []

    @property
    def reads_files(self) -> bool:
        """Whether a block reads files that its column names (pictures, .txt files)."""
        return any(block.suffixes for block in getattr(self.encoder, "blocks", []))

    @property
    def kinds(self) -> list[str]:
        """The kinds of data of the model's inputs (registry.KINDS), block by block."""
        return [block.kind for block in getattr(self.encoder, "blocks", [])]

    @property
    def in_features(self) -> int:
        """The line: its one column (a table's model is built from encoder.blocks)."""
        X = self.X["train"]
        return X.shape[1] if isinstance(X, torch.Tensor) else 0


def prepare_data(
    config: RunConfig, log: Callable[[str], None] = print, keep_table: bool = False
) -> Prepared:
    """Step 1: the line with known parameters, the user's table, split and encoded, or a
    folder of class folders (prepare_folder).

    The table itself is let go once encoded (a run needs only its target column after
    that), unless `keep_table`.
    """
    d, seed = config.data, config.train.seed
    if not d.path:
        X, y = make_line(d.weight, d.bias, d.start, d.end, d.step, d.noise, seed=seed)
        rows = dict(
            zip(SPLITS, split_indices(len(X), d.train, d.val, d.test, d.shuffle, seed), strict=True)
        )
        noise = f" + noise (std {d.noise:g})" if d.noise else ""
        parts, targets = _parts(X, rows), _parts(y, rows)
        return Prepared(
            parts,
            targets,
            targets,
            rows,
            "regression",
            f"y = {d.weight:g} * X + {d.bias:g}{noise}, {len(X)} rows",
            x_plot=parts,
            true={"weight": d.weight, "bias": d.bias},
            source_rows=len(X),
        )

    from torchwork.config import choose_split, is_folder

    if is_folder(d.path):
        return prepare_folder(config, log, keep_table)
    from torchwork.kinds.base import Source
    from torchwork.kinds.encoder import Encoder, decode_columns, recognise, say_kinds
    from torchwork.tables.check import check_table, detect_task, select_columns
    from torchwork.tables.read import CsvFormat, give_back_memory, read_table

    source = d.path
    table = read_table(source, CsvFormat.of(d))
    target, features = select_columns(table, d.target, d.features, source, d.exclude)
    checked = check_table(
        table, [*features, target], source, dropna=d.dropna, log=log, target=target, keep=features
    )
    table, dropped, missing = checked.table, checked.dropped, checked.missing
    empty = [name for name in features if missing.get(name) == table.num_rows]
    if empty:
        log(f"   Left out {len(empty)} column(s) empty in every row: {', '.join(empty[:10])}")
        features = [name for name in features if name not in empty]
        missing = {name: n for name, n in missing.items() if name not in empty}
        if not features:
            raise DataError(f"every feature column of {source} is empty: nothing to learn from")
    where = Source(source, Path(source).parent, d.skip_bad, d.encoding, log)
    options = fit_options(config)
    kinds = recognise(table, features, options.kinds, where)
    say_kinds(kinds, where)
    _check_missing(missing, kinds, source)
    if missing:
        listed = ", ".join(f"'{n}' ({c:,})" for n, c in list(missing.items())[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        log(
            f"   Empty cells, kept: {listed}{more}; each as its kind takes it (a number: the "
            "training mean, and an input saying so; a category: one of its own; text: no words)"
        )
    table, decoded = decode_columns(table, kinds, where, options)
    task, why = detect_task(table.column(target), d.task, target, source)
    chosen_split = choose_split(config, table.num_rows, sorted({k for k, _ in kinds.values()}))
    if chosen_split:
        log(chosen_split)
    try:
        rows = dict(
            zip(
                SPLITS,
                split_indices(table.num_rows, d.train, d.val, d.test, d.shuffle, seed),
                strict=True,
            )
        )
    except TorchworkError as e:
        raise DataError(f"{source} has {table.num_rows} rows, too few for the split: {e}") from None
    options.scale_target = options.scale_target and task == "regression"
    encoder = Encoder.fit(
        table, features, target, task, rows["train"].numpy(), where, options, kinds, decoded
    )
    y = encoder.encode_target(table, source)
    y_raw = encoder.target_values(table) if task == "regression" else y.reshape(-1).long()
    if task != "regression" and len(torch.unique(y_raw[rows["train"]])) < 2:
        raise DataError(
            f"the training rows of {source} hold only one class of '{target}': add rows or use --shuffle"
        )
    # Every row of every split is written once, in split order, straight into one tensor
    # per block: each split is a slice of it, and the inputs exist once.
    order = torch.cat([rows[name] for name in SPLITS]).numpy()
    X = encoder.transform(table, where, decoded, order=order)
    examples = encoder.examples(table, decoded, rows["test"][:EXAMPLES].numpy())
    del decoded
    x_plot = None
    if len(encoder.features) == 1 and len(encoder.blocks[0].standardization()[0]) == 1:
        # One feature that is one number a row: the course's picture of x against y
        x_plot = _slices(encoder.blocks[0].raw(table, where)[order], rows)
    description = (
        f"{source}, {table.num_rows} rows x {len(encoder.features)} features, target '{target}'\n"
        f"   Task: {task} ({why}; --task to change)"
    )
    kept, source_rows = table.column(target), table.num_rows
    if not keep_table:
        del table
        table = None
        give_back_memory()
    return Prepared(
        _slices(X, rows),
        _parts(y, rows),
        _parts(y_raw, rows),
        rows,
        task,
        description,
        encoder=encoder,
        target=kept,
        x_plot=x_plot,
        source_rows=source_rows,
        table=table,
        examples=examples,
        dropped=dropped,
        missing=missing,
    )


def fit_options(config: RunConfig) -> Any:
    """What the config says about encoding a table's columns (kinds.encoder.FitOptions)."""
    from torchwork.kinds.encoder import FitOptions

    d, m = config.data, config.model
    return FitOptions(
        scale=d.scale,
        scale_target=d.scale_target,
        categorical=d.categorical,
        max_categories=d.max_categories,
        keep_ids=bool(d.features),
        kinds=dict(config_kinds(d.kinds)),
        model=m.kind,
        hidden=list(m.hidden),
        image_size=d.image_size,
        channels=d.channels,
    )


def _parts(tensor: torch.Tensor, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor[index] for name, index in rows.items()}


def _slices(tensor: Any, rows: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The splits of a tensor (or Inputs) whose rows are in split order."""
    result, start = {}, 0
    for name in SPLITS:
        result[name] = tensor[start : start + len(rows[name])]
        start += len(rows[name])
    return result


def stratified_indices(
    labels: torch.Tensor,
    train: float = 0.8,
    val: float = 0.0,
    test: float = 0.2,
    seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """split_indices class by class: each class's rows split in the same fractions (in a
    seeded random order), so that every split has the classes in the proportions of the
    whole. Each split's rows are in order."""
    g = _generator(seed)
    parts: list[list[torch.Tensor]] = [[], [], []]
    for k in torch.unique(labels).tolist():
        members = torch.nonzero(labels == k).reshape(-1)
        members = members[torch.randperm(len(members), generator=g)]
        n_train, n_val, n_test = _class_sizes(len(members), train, val, test)
        a, b = n_train, n_train + n_val
        for part, rows in zip(
            parts, (members[:a], members[a:b], members[len(members) - n_test :]), strict=True
        ):
            part.append(rows)
    return tuple(torch.sort(torch.cat(p)).values for p in parts)  # type: ignore[return-value]


def fold_indices(
    rows: int, folds: int, labels: torch.Tensor | None, seed: int
) -> list[torch.Tensor]:
    """Row numbers 0..rows-1 dealt into `folds` disjoint folds that together hold every row
    once, in a seeded random order; with `labels` (classification) class by class, so that
    each fold holds every class's rows within one of an equal share. Each fold is sorted.

    >>> [f.tolist() for f in fold_indices(5, 2, None, seed=0)]
    [[1, 2, 4], [0, 3]]
    """
    g = _generator(seed)
    groups = (
        [torch.arange(rows)]
        if labels is None
        else [torch.nonzero(labels == k).reshape(-1) for k in torch.unique(labels).tolist()]
    )
    parts: list[list[torch.Tensor]] = [[] for _ in range(folds)]
    start = 0  # each class is dealt on from where the last left off: folds stay equal overall
    for members in groups:
        members = members[torch.randperm(len(members), generator=g)]
        for i in range(folds):
            parts[(start + i) % folds].append(members[i::folds])
        start = (start + len(members)) % folds
    return [torch.sort(torch.cat(p)).values for p in parts]


def _class_sizes(rows: int, train: float, val: float, test: float) -> tuple[int, int, int]:
    """A class's share of each split: rounded, so that a class of 7 images still gives one
    to the test split at 0.2; the training split keeps at least one."""
    n_test = min(rows - 1, round(test * rows)) if test > 0 else 0
    n_val = min(rows - 1 - n_test, round(val * rows)) if val > 0 else 0
    n_train = rows - n_test - n_val if train + val + test > 1 - 1e-9 else round(train * rows)
    return max(1, min(n_train, rows - n_test - n_val)), n_val, n_test


def _check_missing(missing: dict[str, int], kinds: dict[str, tuple[str, str]], source: str) -> None:
    """Empty cells are kept where their column's kind takes them (a number's mean and an
    input saying so, a category of their own, an empty document), refused elsewhere; the
    columns that have them are said."""
    from torchwork import registry

    refused = [n for n in missing if not registry.KINDS[kinds[n][0]].load().takes_missing]
    if refused:
        listed = ", ".join(f"'{n}' ({missing[n]:,})" for n in refused[:10])
        raise DataError(
            f"{source} has empty cells in {listed}, of a kind that cannot be missing "
            f"({', '.join(sorted({kinds[n][0] for n in refused}))}): fill them in, or add "
            "--dropna to drop those rows"
        )


def _class_needs(train: float, val: float, test: float) -> int | str:
    """The fewest rows a class needs for _class_sizes to give one to each split asked for."""
    for rows in range(1, 1001):
        sizes = _class_sizes(rows, train, val, test)
        if all(n >= 1 for n, fraction in zip(sizes, (train, val, test), strict=True) if fraction):
            return rows
    return "more than 1,000"


def prepare_folder(
    config: RunConfig, log: Callable[[str], None] = print, keep_table: bool = False
) -> Prepared:
    """Step 1 for a folder of class folders: the table (file, label) it stands for, its files
    read once as their kind reads them (pictures decoded into one uint8 tensor, in split
    order, each split a slice of it), split by class unless the folder has its own train/
    and test/, labelled by folder name."""
    from torchwork import registry
    from torchwork.config import folder_kind
    from torchwork.kinds.base import Source
    from torchwork.kinds.encoder import Encoder, decode_columns
    from torchwork.tables.folder import find_files, summary

    d, seed = config.data, config.train.seed
    kind = folder_kind(d.path)
    entry = registry.KINDS[kind]
    noun = entry.noun
    folder = find_files(d.path, entry.suffixes, noun)
    classes = list(folder.classes)
    task: Task = "binary" if len(classes) == 2 else "multiclass"
    if d.task not in ("auto", task):
        raise ConfigError(
            f"--task {d.task}: {len(classes)} classes of {noun} make a {task} task: drop --task"
        )
    notes: list[str] = []
    where = Source(str(folder.root), folder.root, d.skip_bad, d.encoding, notes.append)
    options = fit_options(config)
    kinds = {"file": (kind, "the files of a folder")}
    table = folder.table()
    files_before = table.column("file").to_pylist()
    table, decoded = decode_columns(table, kinds, where, options)
    files = table.column("file").to_pylist()
    dropped = len(files_before) - len(files)
    if dropped:
        kept = set(files)
        folder = folder.without(folder.root / f for f in files_before if f not in kept)
    index = {name: k for k, name in enumerate(classes)}
    labels = torch.tensor([index[v] for v in table.column("label").to_pylist()], dtype=torch.long)
    if folder.layout == "classes":
        try:
            parts = stratified_indices(labels, d.train, d.val, d.test, seed)
        except TorchworkError as e:
            raise DataError(f"{folder.root} has too few {noun} for the split: {e}") from None
        rows = dict(zip(SPLITS, parts, strict=True))
        how = "stratified by class"
    else:
        given = table.column("split").to_pylist()
        rows = {
            split: torch.tensor([i for i, s in enumerate(given) if s == split], dtype=torch.long)
            for split in SPLITS
        }
        how = "as the folder gives it"
        if "val" not in folder.files and d.val > 0:
            # Early stopping needs files the model does not train on: a share of train/.
            share = d.val / (d.train + d.val)
            train_rows = rows["train"]
            keep, _, held = stratified_indices(labels[train_rows], 1 - share, 0.0, share, seed)
            rows["train"], rows["val"] = train_rows[keep], train_rows[held]
            notes.append(
                f"   Validation: {len(rows['val']):,} {noun} of {folder.folders['train']} "
                f"({share:.0%}, by class) held out to stop early on (--val 0 to train on all)"
            )
    if len(torch.unique(labels[rows["train"]])) < 2:
        raise DataError(f"the training {noun} of {folder.root} hold only one class: add {noun}")
    for name, fraction in (("val", d.val), ("test", d.test)):
        if fraction > 0 and not len(rows[name]):
            largest = int(torch.bincount(labels).max())
            need = _class_needs(d.train, d.val, d.test)
            raise DataError(
                f"{folder.root} has too few {noun} for a {name} split (--{name} {fraction:g}): "
                f"its largest class has {largest}, and at --train {d.train:g} --val {d.val:g} "
                f"--test {d.test:g} a class needs {need} to give one to each split; add {noun}"
                + (", or give --val 0" if name == "val" else "")
            )
    encoder = Encoder.fit(
        table, ["file"], "label", task, rows["train"].numpy(), where, options, kinds, decoded
    )
    encoder.labels = classes  # every class of train/, as the folders name them
    order = torch.cat([rows[name] for name in SPLITS]).numpy()
    X = encoder.transform(table, where, decoded, order=order)
    examples = encoder.examples(table, decoded, rows["test"][:EXAMPLES].numpy())
    del decoded
    y_raw = labels
    y = y_raw.to(torch.float32).unsqueeze(1) if task == "binary" else y_raw
    description = (
        f"{summary(folder, dropped)}\n"
        f"   Task: {task} ({len(classes)} classes, the folder names); split {how}"
    )
    for note in notes:
        description += "\n" + note
    return Prepared(
        _slices(X, rows),
        _parts(y, rows),
        _parts(y_raw, rows),
        rows,
        task,
        description,
        encoder=encoder,
        target=table.column("label"),
        source_rows=table.num_rows,
        table=table if keep_table else None,
        files=files,
        folder=True,
        examples=examples,
    )
