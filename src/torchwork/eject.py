"""`torchwork eject`: a finished run written out as one plain PyTorch script that trains the
same model again, step by step as the course does, and reproduces the run bit for bit.

The script imports torch (numpy and pyarrow for a table), never torchwork: the data, the
split, the model class, the loss function and optimizer, the training and testing loops,
early stopping, the evaluation and the saving are all in it, in the course's six sections
and with the course's names. Where torchwork computes something in a way a plain loop
would not (an addmv for one output, a full batch stored column by column, fused Adam), the
script does the same, with a comment saying why: otherwise the sums would round apart.
A table's script takes `--data` for a table moved since the run. What the run did besides
training its model (--folds, --calibrate, --threshold, --interval) the script leaves out,
and says so (`left_out`).

>>> eject("runs/line", "train.py")  # doctest: +SKIP
PosixPath('train.py')
"""

from __future__ import annotations

import itertools
import json
import math
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchwork import __version__, registry
from torchwork.checkpoint import read_metadata
from torchwork.config import RunConfig
from torchwork.data import EVAL_ROWS, split_sizes
from torchwork.engine import FEATURE_MAJOR_ROWS
from torchwork.errors import ConfigError, DataError, RunFolderError
from torchwork.fileio import file_sha256, write_text_atomic
from torchwork.kinds.legacy import upgrade_preprocess, upgrade_spec
from torchwork.predict import check_out_name, refuse_overwrite
from torchwork.runfolder import MODEL_SAFETENSORS, read_run_folder

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")  # what the script reads, with pyarrow
SCRIPTED_KINDS = ("number", "category")  # the kinds of column whose encoding it writes out


@dataclass
class Recipe:
    """What a script needs to know about a run, every setting checked to be one it can
    reproduce exactly."""

    name: str  # the run folder's name
    config: RunConfig  # as run: every auto already chosen
    summary: dict[str, Any]
    task: str
    spec: dict[str, Any]  # the model's description (kind, in_features, out_features, hidden)
    rows: dict[str, int]  # split -> rows
    source_rows: int  # rows the data has, in every split and none
    loss: str  # the loss class in torch.nn
    preprocess: dict[str, Any] | None = None  # the table encoder, as stored in the model file
    path: Path | None = None  # the table, absolute
    sha256: str = ""
    delimiter: str = ","
    as_float64: list[str] = field(default_factory=list)  # number columns stored as text or decimals
    as_string: list[str] = field(default_factory=list)  # text columns not stored as plain strings


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def eject(
    run_dir: str | Path,
    out: str | Path = "train.py",
    force: bool = False,
    say: Callable[[str], None] | None = _stderr,
) -> Path:
    """Write the run in `run_dir` as one standalone PyTorch script at `out`, making its
    folders; an existing file is replaced only with `force`. A run whose settings the script
    cannot reproduce exactly is refused with the setting named; the settings it leaves out
    (`left_out`) are named in the script's docstring and, through `say`, in one line."""
    out = check_out_name(out)
    if out.suffix != ".py":
        raise ConfigError(f"--out {out}: give the script a .py name, such as train.py")
    refuse_overwrite(out, force)
    recipe = read_recipe(run_dir)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"--out {out}: cannot make its folder {out.parent} ({e.strerror or e}): "
            "give a script name in a folder you can write to"
        ) from None
    write_text_atomic(out, script(recipe, out.name))
    line = left_out_line(recipe)
    if line and say is not None:
        say(line)
    return out


def read_recipe(run_dir: str | Path) -> Recipe:
    """The run folder read and checked: finished, readable by this version, and made of
    settings the script reproduces exactly."""
    folder = Path(run_dir)
    run = read_run_folder(folder)
    model_file = folder / MODEL_SAFETENSORS
    if not model_file.is_file():
        raise RunFolderError(
            f"{folder} is not a finished run folder (it has no {MODEL_SAFETENSORS}): give a "
            "folder written by torchwork run"
        )
    if not run.history:
        raise RunFolderError(f"{folder} has no metrics.csv rows: give a finished run folder")
    meta = read_metadata(model_file)
    config = RunConfig.from_dict(run.config, str(folder / "config.toml"))
    config.validate(stored=True)
    summary = dict(run.summary)
    task = str(summary.get("task", "regression"))
    rows = {name: int(n) for name, n in (summary.get("rows") or {}).items()}
    _refuse_what_differs(folder, config, summary, meta["model"], rows)
    t = config.train
    loss = registry.LOSSES[registry.AUTO_LOSS[task] if t.loss == "auto" else t.loss].target
    preprocess = upgrade_preprocess(meta["preprocess"]) if meta["preprocess"] else None
    recipe = Recipe(
        run.name,
        config,
        summary,
        task,
        upgrade_spec(meta["model"], meta["preprocess"]),
        rows,
        0,
        loss.partition(":")[2],
        preprocess=preprocess,
    )
    kinds = [b["kind"] for b in (preprocess or {}).get("blocks", [])]
    other = [k for k in kinds if k not in SCRIPTED_KINDS]
    if other:
        columns = [c for b in preprocess["blocks"] if b["kind"] in other for c in b["columns"]]
        raise RunFolderError(
            f"cannot eject {folder}: its {other[0]} column(s) {', '.join(columns[:3])}, which "
            "the script does not read (it reads number and category columns)"
        )
    if config.data.path:
        _read_table_facts(recipe, folder)
    else:
        import torch

        d = config.data
        recipe.source_rows = len(torch.arange(d.start, d.end, d.step))
    return recipe


def _refuse_what_differs(
    folder: Path, config: RunConfig, summary: dict[str, Any], spec: dict[str, Any], rows: dict
) -> None:
    """One line naming the first setting of the run that the script does not reproduce."""
    d, t = config.data, config.train
    processes = (summary.get("reproducibility") or {}).get("processes", 1)
    device = str(summary.get("device", "cpu"))
    horizons = [
        r
        for r in (summary.get("training") or {}).get("resumed", [])
        if isinstance(r, dict) and r.get("epochs") != r.get("epochs_before")
    ]
    problems = [
        (
            t.schedule != "none" and bool(horizons),
            f"it was resumed with --epochs changed from {horizons[0].get('epochs_before')} to "
            f"{horizons[-1].get('epochs')} under the {t.schedule} schedule (its learning rates "
            "changed mid-run)"
            if horizons
            else "",
        ),
        (processes != 1, f"it trained in {processes} processes (--nproc)"),
        (not device.startswith("cpu"), f"it trained on {device}: the script reproduces CPU runs"),
        (spec.get("kind") not in ("params", "linear", "mlp"), f"--model {spec.get('kind')}"),
        (bool(t.class_weight), f"--class-weight {t.class_weight}"),
        (d.dropna, "--dropna"),
        (
            bool((summary.get("data") or {}).get("missing")),
            "its table has empty cells, which the run filled in (the script reads full tables)",
        ),
        (
            d.path and Path(d.path).suffix.lower() not in TABLE_SUFFIXES,
            f"its data is a {Path(d.path).suffix} file: the script reads CSV and Parquet files",
        ),
        (
            any(n > EVAL_ROWS for n in rows.values()),
            f"a split of more than {EVAL_ROWS:,} rows (the script tests each split at once)",
        ),
    ]
    for refused, setting in problems:
        if refused:
            raise RunFolderError(
                f"cannot eject {folder}: {setting}, which the script cannot reproduce exactly"
            )


def left_out(r: Recipe) -> list[tuple[str, str]]:
    """The run's settings that the script neither reproduces nor refuses (what the run did
    besides training its model, or after), as (the flags, what they did); [] when none."""
    e, t = r.preprocess or {}, r.config.train
    items = []
    if t.folds or t.repeats > 1:
        flags = f"--folds {t.folds}" if t.folds else ""
        flags = f"{flags} --repeats {t.repeats}".strip() if t.repeats > 1 else flags
        items.append(
            (flags, "the cross-validation fits before the final model, which never change it")
        )
    if r.config.calibrate:
        temperature = float(e.get("temperature", 1.0))
        items.append(
            (
                "--calibrate",
                "temperature scaling, fitted on the validation rows; section 4 divides the "
                f"logits by the run's temperature, {temperature:.6g}",
            )
        )
    threshold = r.config.threshold
    if threshold == "auto":
        items.append(
            (
                "--threshold auto",
                f"the probability of the best validation {r.config.threshold_metric}; section 4 "
                f"counts a row positive at the run's, {float(e.get('threshold', 0.5)):g}",
            )
        )
    elif float(threshold) != 0.5:
        items.append(
            (f"--threshold {float(threshold):g}", "section 4 alone counts a row positive there")
        )
    if r.config.interval:
        half_width = (e.get("interval") or [0.0, float("nan")])[-1]
        items.append(
            (
                f"--interval {r.config.interval:g}",
                "split-conformal prediction intervals, fitted on the validation rows: the "
                f"prediction ±{half_width:.6g} in the target's units",
            )
        )
    return items


def _before_them(r: Recipe) -> str:
    """What a model.pth of a run with settings applied after training gives ('' for none)."""
    c = r.config
    if c.calibrate or c.interval or c.threshold == "auto" or float(c.threshold) != 0.5:
        return (
            "model.pth holds the trained weights alone: its predictions are the model's before them"
        )
    return ""


def left_out_line(r: Recipe) -> str:
    """`left_out` in one line, as eject prints it ('' when the script leaves nothing out)."""
    items = left_out(r)
    if not items:
        return ""
    line = "The script leaves out: " + "; ".join(f"{flags} ({what})" for flags, what in items)
    after = _before_them(r)
    return f"{line}. {after}." if after else f"{line}."


def _read_table_facts(recipe: Recipe, folder: Path) -> None:
    """The table's place, fingerprint, separator and column types, as the run read it."""
    from torchwork.tables.check import is_numeric, is_text
    from torchwork.tables.read import CsvFormat, csv_delimiter, read_table

    d = recipe.config.data
    path = Path(d.path).resolve()
    if not path.is_file():
        raise DataError(
            f"the run's data file {d.path} is not found from here: run eject in the folder the "
            f"run was started in"
        )
    recipe.path = path
    recipe.sha256 = file_sha256(path)
    stored = (recipe.summary.get("data") or {}).get("sha256")
    if stored and stored != recipe.sha256:
        raise DataError(
            f"{d.path} changed since the run {folder} trained on it: a script would not "
            "reproduce it; start a new run"
        )
    csv = CsvFormat.of(d)
    if path.suffix.lower() in (".csv", ".tsv"):
        recipe.delimiter = csv_delimiter(path, csv)
    table = read_table(path, csv)
    recipe.source_rows = table.num_rows
    encoder = recipe.preprocess or {}
    for name in _numbers(recipe).get("columns", []):
        if not _plain_number(table.schema.field(name).type):
            recipe.as_float64.append(name)
    for name in _categories(recipe).get("columns", []):
        if not _plain_string(table.schema.field(name).type):
            recipe.as_string.append(name)
    target = encoder.get("target")
    if target is not None:
        type_ = table.schema.field(target).type
        if recipe.task == "regression" and not _plain_number(type_):
            recipe.as_float64.append(target)
        if recipe.task != "regression" and is_text(type_) and not _plain_string(type_):
            recipe.as_string.append(target)
        if recipe.task != "regression" and not (is_numeric(type_) or is_text(type_)):
            raise DataError(f"cannot eject {folder}: its target column holds {type_} values")


def _numbers(r: Recipe) -> dict[str, Any]:
    """The run's block of number columns, as its model file stores it ({} when none)."""
    return next((b for b in (r.preprocess or {}).get("blocks", []) if b["kind"] == "number"), {})


def _categories(r: Recipe) -> dict[str, Any]:
    """The run's block of category columns ({} when none)."""
    blocks = (r.preprocess or {}).get("blocks", [])
    return next((b for b in blocks if b["kind"] == "category"), {})


def _py(value: Any) -> str:
    """A Python literal of text, numbers or lists of them, its strings in double quotes."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_py(v) for v in value) + "]"
    return repr(value)


def _plain_number(type_: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_boolean(type_)


def _plain_string(type_: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_string(type_)


# --- The script ---------------------------------------------------------------------------


def script(recipe: Recipe, filename: str = "train.py") -> str:
    """The script's text, section by section."""
    parts = [
        _header(recipe, filename),
        _imports(recipe),
        _data(recipe),
        _model(recipe),
        _training(recipe),
        _evaluation(recipe),
        _saving(recipe),
        _together(),
    ]
    text = "\n\n".join(part.strip("\n") for part in parts) + "\n"
    # Two blank lines before the model's class, as a formatter puts them
    return text.replace("\n\n# 2. Build a model", "\n\n\n# 2. Build a model", 1)


def _header(r: Recipe, filename: str) -> str:
    command = r.summary.get("command") or "torchwork run"
    # as the docstring's text: a Windows path's backslashes, or quotes, stay what was typed
    command = command.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    versions = r.summary.get("versions") or {}
    threads = (r.summary.get("reproducibility") or {}).get("threads", "?")
    moved = ""
    if r.path is not None:
        moved = "\n" + textwrap.fill(
            f"It reads the table where the run read it; `python {filename} --data "
            f"NEW/PATH{r.path.suffix}` reads it from another place (checked to be the same file).",
            94,
            break_on_hyphens=False,
        )
        moved += "\n"
    return f'''"""The run {r.name} as plain PyTorch, written by `torchwork eject` (torchwork {__version__}).

The run: {command}

`python {filename}` trains the same model again, step by step, and writes model.pth (its
state_dict) and metrics.csv (the losses every {r.config.train.log_every} epochs) into the folder it runs in.
On the machine the run was made on (torch {versions.get("torch", "?")}, {threads} threads), model.pth's tensors
equal the run's model.safetensors and metrics.csv is the run's own file, bit for bit.
{moved}{_left_out_paragraph(r)}"""'''


def _left_out_paragraph(r: Recipe) -> str:
    """`left_out` as the docstring says it: one item a setting, wrapped ('' for none)."""
    items = left_out(r)
    if not items:
        return ""
    lines = ["", "The script leaves out:"]
    for flags, what in items:
        lines.append(
            textwrap.fill(f"{flags}: {what}", 92, initial_indent="- ", subsequent_indent="  ")
        )
    after = _before_them(r)
    if after:
        lines.append(textwrap.fill(f"{after}.", 94))
    return "\n".join(lines) + "\n"


def _imports(r: Recipe) -> str:
    t = r.config.train
    # a table's script takes --data and checks the file's SHA-256
    lines = ["import argparse", "import csv", "import hashlib"] if r.path else ["import csv"]
    if t.schedule == "cosine":
        lines.append("import math")
    lines.append("")
    if r.path is not None:
        lines.append("import numpy as np")
        if _uses_arrow_compute(r):
            lines += ["import pyarrow as pa", "import pyarrow.compute as pc"]
        lines.append(
            "import pyarrow.csv as pa_csv"
            if r.path.suffix.lower() in (".csv", ".tsv")
            else "import pyarrow.parquet as pq"
        )
    lines += ["import torch", "from torch import nn"]
    return "\n".join(lines)


def _uses_arrow_compute(r: Recipe) -> bool:
    """Whether the script looks values up or casts columns (text, classes): pyarrow.compute."""
    return bool(_categories(r)) or r.task != "regression" or bool(r.as_float64 or r.as_string)


# --- 1. Data ------------------------------------------------------------------------------


def _data(r: Recipe) -> str:
    return _line(r) if r.path is None else _table(r)


def _line(r: Recipe) -> str:
    d, seed = r.config.data, r.config.train.seed
    text = f"""# 1. Data: a straight line with known parameters
weight = {d.weight!r}
bias = {d.bias!r}
start = {d.start!r}
end = {d.end!r}
step = {d.step!r}
X = torch.arange(start, end, step).unsqueeze(dim=1)
y = weight * X + bias
"""
    if d.noise > 0:
        text += f"""# Gaussian noise on y, from a generator seeded with {seed}
y = y + {d.noise!r} * torch.randn(y.shape, generator=torch.Generator().manual_seed({seed}))
"""
    return text + "\n" + _split(r, "X", "y")


def _split(r: Recipe, X: str, y: str) -> str:
    """The split, from X and y (every row, in the source's order)."""
    d, seed = r.config.data, r.config.train.seed
    n_train, n_val, n_test = split_sizes(r.source_rows, d.train, d.val, d.test)
    a, b, c = n_train, n_train + n_val, r.source_rows - n_test
    what = f"{n_train} rows to train on" + (f", {n_val} to validate on" if n_val else "")
    what += f", {n_test} to test on" if n_test else ""
    if r.path is None and not d.shuffle:
        # The course's split: slices of the rows in order.
        lines = [f"# Split in order, as the course does: {what}"]
        lines.append(f"train_split = {a}  # int({d.train!r} * len(X))")
        lines.append(f"X_train, y_train = {X}[:train_split], {y}[:train_split]")
        if n_val:
            lines.append(f"X_val, y_val = {X}[train_split:{b}], {y}[train_split:{b}]")
        if n_test:
            at = "train_split" if c == a else str(c)
            lines.append(f"X_test, y_test = {X}[{at}:], {y}[{at}:]")
        return "\n".join(lines) + "\n"
    if d.shuffle:
        lines = [
            f"# Split: the rows shuffled by a generator seeded with {seed}, then",
            f"# {what}",
            f"order = torch.randperm(len({X}), generator=torch.Generator().manual_seed({seed}))",
        ]
    else:
        lines = [f"# Split in order: {what}", f"order = torch.arange(len({X}))"]
    lines.append(f"train_rows, val_rows, test_rows = order[:{a}], order[{a}:{b}], order[{c}:]")
    if r.path is None:
        for name in ("train", "val", "test"):
            if name == "train" or (n_val if name == "val" else n_test):
                lines.append(f"X_{name}, y_{name} = {X}[{name}_rows], {y}[{name}_rows]")
        return "\n".join(lines) + "\n"
    # A table's inputs are put in split order once: each split is a slice of one tensor.
    lines.append(f"X = {X}[torch.cat([train_rows, val_rows, test_rows])]")
    lines.append(f"X_train, X_val, X_test = X[:{a}], X[{a}:{b}], X[{b}:]")
    lines.append(f"y_train, y_val, y_test = {y}[train_rows], {y}[val_rows], {y}[test_rows]")
    if r.task == "regression" and _scaled_target(r):
        lines.append("y_test_values = y_values[test_rows]  # in the target's own units")
    return "\n".join(lines) + "\n"


def _scaled_target(r: Recipe) -> bool:
    e = r.preprocess or {}
    return (e.get("target_mean", 0.0), e.get("target_std", 1.0)) != (0.0, 1.0)


def _table(r: Recipe) -> str:
    assert r.path is not None
    d = r.config.data
    lines = [
        f"# 1. Data: the table the run trained on, {r.source_rows} rows, where the run read it or",
        "# where --data says",
        f"parser = argparse.ArgumentParser(description={_py(f'The run {r.name} again, in plain PyTorch.')})",
        "parser.add_argument(",
        '    "--data",',
        f"    default={_py(str(r.path))},",
        '    help="the table the run trained on (default: %(default)s)",',
        ")",
        "path = parser.parse_args().data",
        f"sha256 = {_py(r.sha256)}  # the file's fingerprint when the run read it",
        "try:",
        '    with open(path, "rb") as f:',
        "        digest = hashlib.sha256(f.read()).hexdigest()",
        "except OSError as error:",
        "    parser.exit(",
        "        2,",
        '        f"cannot read the table {path} ({error.strerror}): give where it is now, as in "',
        f'        f"python {{parser.prog}} --data NEW/PATH{r.path.suffix}\\n",',
        "    )",
        "if digest != sha256:",
        '    parser.exit(2, f"{path} changed since the run: its SHA-256 differs\\n")',
    ]
    if r.path.suffix.lower() in (".csv", ".tsv"):
        parse = f"delimiter={_py(r.delimiter)}"
        convert = "strings_can_be_null=True"  # empty text is missing, as torchwork reads it
        if d.decimal != ".":
            convert += f", decimal_point={_py(d.decimal)}"
        options = [
            f"parse_options=pa_csv.ParseOptions({parse})",
            f"convert_options=pa_csv.ConvertOptions({convert})",
        ]
        if d.encoding.replace("_", "-").lower() not in ("utf-8", "utf8"):
            options.insert(0, f"read_options=pa_csv.ReadOptions(encoding={_py(d.encoding)})")
        lines.append("table = pa_csv.read_csv(")
        lines += ["    path,"] + [f"    {o}," for o in options]
        lines.append(")")
    else:
        lines.append("table = pq.read_table(path)")
    lines.append("table = table.rename_columns([name.strip() for name in table.column_names])")
    lines.append("")
    lines += _column_helpers(r)
    lines.append("")
    lines.append(
        "# The model's inputs: the numbers standardized with their mean and standard deviation"
    )
    lines.append(
        "# over the training rows (as the run measured them, in float64, stored as float32),"
    )
    lines.append("# then each category column's code, its place in the column's categories")
    inputs = []
    numbers = _numbers(r)
    for name, mean, std in zip(
        numbers.get("columns", []), numbers.get("mean", []), numbers.get("std", []), strict=True
    ):
        if (mean, std) == (0.0, 1.0):
            inputs.append(f"numbers({_py(name)}).reshape(-1, 1)")
        else:
            inputs.append(f"standardized({_py(name)}, mean={mean!r}, std={std!r})")
    categories = _categories(r)
    for name, listed, other in zip(
        categories.get("columns", []),
        categories.get("categories", []),
        categories.get("other", []),
        strict=True,
    ):
        inputs.append(f"codes({_py(name)}, {_py(listed)}{', other=True' if other else ''})")
    lines.append("X_all = torch.from_numpy(")
    lines.append("    np.concatenate(")
    lines.append("        [")
    lines += [f"            {i}," for i in inputs]
    lines.append("        ],")
    lines.append("        axis=1,")
    lines.append("    )")
    lines.append(")")
    lines.append("")
    lines += _target(r)
    lines.append("")
    return "\n".join(lines) + "\n" + _split(r, "X_all", "y_all")


def _column_helpers(r: Recipe) -> list[str]:
    numbers = _numbers(r)
    lines = ["", "def numbers(name):"]
    if r.as_float64:
        lines += [
            '    """A column of numbers as float32 (text or decimal numbers read as float64 first)."""',
            "    column = table[name]",
            f"    if name in {_py(sorted(r.as_float64))}:",
            "        column = column.cast(pa.float64())",
            "    return column.to_numpy().astype(np.float32)",
        ]
    else:
        lines += [
            '    """A column of numbers as float32, as the model sees them."""',
            "    return table[name].to_numpy().astype(np.float32)",
        ]
    scaled = zip(numbers.get("mean", []), numbers.get("std", []), strict=True)
    if any((mean, std) != (0.0, 1.0) for mean, std in scaled):
        lines += [
            "",
            "",
            "def standardized(name, mean, std):",
            '    """A number column less its mean, divided by its standard deviation (float32)."""',
            "    return ((numbers(name) - np.float32(mean)) / np.float32(std)).reshape(-1, 1)",
        ]
    if _categories(r):
        column = "table[name].cast(pa.string())" if r.as_string else "table[name]"
        lines += [
            "",
            "",
            "def codes(name, categories, other=False):",
            '    """Each row\'s place in the categories (as a float32 column beside the numbers:',
            "    exact below 2**24); with `other`, the categories not listed (--max-categories)",
            '    take the place after them."""',
            f"    codes = pc.index_in({column}, value_set=pa.array(categories))",
            "    if other:",
            "        codes = pc.fill_null(codes, len(categories))",
            "    return codes.to_numpy().astype(np.float32).reshape(-1, 1)",
        ]
    return [*lines, ""]


def _target(r: Recipe) -> list[str]:
    e = r.preprocess or {}
    target = e.get("target", "")
    if r.task == "regression":
        lines = [f"# The target, '{target}', as [rows, 1] float32"]
        if not _scaled_target(r):
            return [*lines, f"y_all = torch.from_numpy(numbers({_py(target)})).unsqueeze(dim=1)"]
        return [
            *lines[:1],
            f"y_values = torch.from_numpy(numbers({_py(target)})).unsqueeze(dim=1)",
            "# standardized as the inputs are: the loss is in these units, the metrics in y's own",
            f"target_mean, target_std = {e['target_mean']!r}, {e['target_std']!r}",
            "y_all = (y_values - target_mean) / target_std",
        ]
    labels = e.get("labels", [])
    numbers = all(isinstance(v, (bool, int, float)) for v in labels)
    column = f"table[{_py(target)}]"
    if numbers:
        column += ".cast(pa.float64())"
        value_set = [float(v) for v in labels]
    else:
        if target in r.as_string:
            column += ".cast(pa.string())"
        value_set = list(labels)
    lines = [
        f"# The target, '{target}': each row's class, its place in the labels",
        f"labels = {_py(labels)}",
        f"classes = pc.index_in({column}, value_set=pa.array({'labels' if not numbers else _py(value_set)}))",
        "classes = torch.from_numpy(classes.to_numpy().astype(np.int64))",
    ]
    if r.task == "binary":
        lines.append("y_all = classes.to(torch.float32).unsqueeze(dim=1)  # 0 or 1, for BCE")
    else:
        lines.append("y_all = classes  # class indices, for cross-entropy")
    return lines


# --- 2. Model, loss function, optimizer ---------------------------------------------------


def _model_name(r: Recipe) -> str:
    return {"params": "model_0", "linear": "model_1"}.get(r.spec["kind"], "model")


def _model_class(r: Recipe) -> tuple[str, str]:
    """(the class's name, its code)."""
    spec = r.spec
    n_in, n_out = spec["in_features"], spec["out_features"]
    if _categories(r):
        return _model_with_categories(r)
    if spec["kind"] == "params":
        return (
            "LinearRegressionModel",
            '''class LinearRegressionModel(nn.Module):
    """The course's model_0: one weight and one bias."""

    def __init__(self):
        super().__init__()
        self.weights = nn.Parameter(torch.randn(1, dtype=torch.float), requires_grad=True)
        self.bias = nn.Parameter(torch.randn(1, dtype=torch.float), requires_grad=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weights * x + self.bias
''',
        )
    if spec["kind"] == "linear":
        name = "LinearRegressionModelV2" if r.task == "regression" else "LinearClassifier"
        what = (
            "The course's model_1: nn.Linear does the weights and bias"
            if r.task == "regression"
            else f"Logistic regression: nn.Linear gives one logit per class ({r.task})"
        )
        if n_out == 1:
            forward = """        # One output: the matrix-vector product torch.addmv, as the run computed it (the
        # same sums as nn.Linear's, in BLAS's faster order for one column)
        layer = self.linear_layer
        return torch.addmv(layer.bias, x, layer.weight[0]).unsqueeze(dim=1)"""
        else:
            forward = "        return self.linear_layer(x)"
        return (
            name,
            f'''class {name}(nn.Module):
    """{what}."""

    def __init__(self):
        super().__init__()
        self.linear_layer = nn.Linear(in_features={n_in}, out_features={n_out})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
{forward}
''',
        )
    widths = [n_in, *spec.get("hidden", [])]
    layers = []
    for a, b in itertools.pairwise(widths):
        layers += [
            f"            nn.Linear(in_features={a}, out_features={b}),",
            "            nn.ReLU(),",
        ]
    layers.append(f"            nn.Linear(in_features={widths[-1]}, out_features={n_out}),")
    body = "\n".join(layers)
    return (
        "MLP",
        f'''class MLP(nn.Module):
    """A multilayer perceptron: Linear and ReLU layers, then a Linear layer."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
{body}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
''',
    )


CATEGORIES_CLASS = '''class Categories(nn.Module):
    """Each category column's code picks its row of one table of weights (a row for every
    category of every column, as wide as the first layer), and a row's picks are summed:
    the one-hot inputs of the categories times their weights, without the one-hot columns."""

    def __init__(self, sizes, width):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(sum(sizes), width))
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.register_buffer("offsets", torch.tensor(starts), persistent=False)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding_bag(codes + self.offsets, self.weight, mode="sum")
'''


def _model_with_categories(r: Recipe) -> tuple[str, str]:
    """The model of a table with category columns, as the run built it (TabularModel): the
    first layer over the numbers, the categories' weights as an embedding, added."""
    spec = r.spec
    n_out, hidden = spec["out_features"], list(spec.get("hidden", []))
    k = len(_numbers(r).get("columns", []))
    sizes = next(b["sizes"] for b in spec["blocks"] if b["kind"] == "category")
    mlp = spec["kind"] == "mlp"
    width = hidden[0] if mlp else n_out
    at = 1 if k else 0  # the categories' place among the blocks
    blocks = "[nn.Identity(), Categories(sizes, width)]" if k else "[Categories(sizes, width)]"
    first = "self.layers[0]" if mlp else "self.linear_layer"
    if mlp:
        name, what = "MLP", "A multilayer perceptron: Linear and ReLU layers, then a Linear layer"
        rest = []
        for a, b in itertools.pairwise(hidden):
            rest += [f"nn.Linear(in_features={a}, out_features={b})", "nn.ReLU()"]
        rest.append(f"nn.Linear(in_features={hidden[-1]}, out_features={n_out})")
        made = (
            "        # The layers after the first, made in order as the run made them\n"
            "        self.layers = nn.Sequential(\n"
            "            first,\n"
            "            nn.ReLU(),\n"
            + "".join(f"            {layer},\n" for layer in rest)
            + "        )"
        )
    else:
        name = "LinearRegressionModelV2" if r.task == "regression" else "LinearClassifier"
        what = (
            "The course's model_1, over numbers and categories"
            if r.task == "regression"
            else f"Logistic regression over numbers and categories ({r.task})"
        )
        made = "        self.linear_layer = first"
    if not k:
        first_step = f"        h = {first}.bias.expand(len(x), -1)  # no numbers: the bias alone"
    elif width == 1:
        first_step = (
            "        # One output: the matrix-vector product torch.addmv, as the run computed it\n"
            f"        layer = {first}\n"
            f"        h = torch.addmv(layer.bias, x[:, :{k}].contiguous(), layer.weight[0]).unsqueeze(dim=1)"
        )
    else:
        first_step = f"        h = {first}(x[:, :{k}].contiguous())"
    after = (
        "        for layer in list(self.layers)[1:]:\n            h = layer(h)\n        return h"
        if mlp
        else "        return h"
    )
    code = f'''{CATEGORIES_CLASS}

class {name}(nn.Module):
    """{what}: the first layer takes the {k} number columns; each category's weights are a row
    of an embedding (the weights its one-hot input would have), added to that layer's output."""

    def __init__(self):
        super().__init__()
        sizes, width = {sizes!r}, {width}
        self.blocks = nn.ModuleList({blocks})
        # One layer over every input, the categories' one-hot inputs included, as the run
        # started it: its category columns become the embedding's rows. The first layer
        # itself is made without drawing from the generator, as the run made it.
        whole = nn.Linear(in_features={k + sum(sizes)}, out_features=width)
        first = torch.nn.utils.skip_init(nn.Linear, in_features={k}, out_features=width)
        with torch.no_grad():
            first.weight.copy_(whole.weight[:, :{k}])
            first.bias.copy_(whole.bias)
            self.blocks[{at}].weight.copy_(whole.weight[:, {k}:].t())
{made}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: the numbers, then each category column's code (as float32)
{first_step}
        h = h + self.blocks[{at}](x[:, {k}:].long())
{after}
'''
    return name, code


def _penalised(r: Recipe) -> bool:
    return isinstance(r.config.train.l2_c, float)


def _penalty(r: Recipe, model: str) -> str:
    """The L2 penalty of a linear classifier (optim.l2_penalty), summed as the run summed it."""
    if not _penalised(r):
        return ""
    weights = [f"{model}.linear_layer.weight"]
    if _categories(r):
        at = 1 if _numbers(r).get("columns") else 0
        weights.append(f"{model}.blocks[{at}].weight")
    total = " + ".join(f"{w}.square().sum()" for w in weights)
    if len(weights) > 1:
        total = f"({total})"
    return f"""


# scikit-learn's L2 penalty of logistic regression, as a term of the mean loss: C times the
# summed loss plus half the squared weights (never the bias), divided by C * rows
C = {r.config.train.l2_c!r}


def penalty():
    return {total} / (2 * C * len(X_train))"""


def _model(r: Recipe) -> str:
    t = r.config.train
    cls, code = _model_class(r)
    model = _model_name(r)
    optimizer = _optimizer(r, model)
    threads = (
        f"torch.set_num_threads({t.threads})  # the run's: another count can round apart\n"
        if t.threads
        else ""
    )
    return f"""# 2. Build a model
{code}

{threads}torch.manual_seed({t.seed})  # the initial parameters come from the seed
{model} = {cls}()

# The loss function and the optimizer
loss_fn = nn.{r.loss}()
{optimizer}{_penalty(r, model)}
"""


def _optimizer(r: Recipe, model: str) -> str:
    t = r.config.train
    params = f"params={model}.parameters()"
    if t.optimizer == "sgd":
        momentum = f", momentum={t.momentum!r}" if t.momentum else ""
        return f"optimizer = torch.optim.SGD({params}, lr={t.lr!r}{momentum})"
    if t.optimizer in ("adam", "adamw"):
        cls = "Adam" if t.optimizer == "adam" else "AdamW"
        return (
            f"# fused: one kernel updates every parameter, as the run's did (the same update,\n"
            f"# rounded as that kernel rounds it)\n"
            f"optimizer = torch.optim.{cls}({params}, lr={t.lr!r}, fused=True)"
        )
    # lbfgs, as torchwork.optim.LBFGS configures it: one iteration per epoch
    return (
        "# L-BFGS, one iteration per epoch, with a strong-Wolfe line search of up to 25\n"
        "# evaluations\n"
        f"optimizer = torch.optim.LBFGS(\n"
        f'    {params}, lr={t.lr!r}, max_iter=1, max_eval=25, line_search_fn="strong_wolfe"\n'
        ")"
    )


# --- 3. Training --------------------------------------------------------------------------


def _training(r: Recipe) -> str:
    t = r.config.train
    model = _model_name(r)
    n_train, n_val, n_test = r.rows.get("train", 0), r.rows.get("val", 0), r.rows.get("test", 0)
    minibatches = 0 < t.batch_size < n_train
    lbfgs = t.optimizer == "lbfgs"
    early = t.patience > 0
    stops = early or t.tol > 0
    penalty = " + penalty()" if _penalised(r) else ""
    lines = ["# 3. Train: the training loop and the testing loop", f"epochs = {t.epochs}"]
    if t.schedule == "cosine":
        lines.append(f"lr = {t.lr!r}  # at the start, decaying to near 0 along half a cosine")
    X_fit = "X_train"
    if _by_column(r, minibatches):
        X_fit = "X_train_by_column"
        lines += [
            "# The training rows stored column by column: the same values, which BLAS",
            "# multiplies faster for one output (and sums in its own order, as the run did)",
            "X_train_by_column = X_train.t().contiguous().t()",
        ]
    if minibatches:
        lines += [
            f"batch_size = {t.batch_size}",
            f"generator = torch.Generator().manual_seed({t.seed})  # the minibatches' order",
        ]
    if t.tol > 0:
        lines += [
            f"tol, tol_epochs = {t.tol!r}, {t.tol_epochs}  # converged: no better by tol for tol_epochs",
            'best_train_loss, flat_epochs = float("inf"), 0',
        ]
    if early:
        lines += [
            f"patience = {t.patience}  # early stopping: epochs without a lower validation loss",
            'best_val_loss, bad_epochs, best_state = float("inf"), 0, None',
        ]
    lines += [
        f"records = []  # the losses every {t.log_every} epochs: metrics.csv",
        *(["stop = False  # set by early stopping or convergence"] if stops else []),
        "",
        "",
        "def loss_of(X, y):",
        '    """The testing loop: the mean loss over every row, without gradients."""',
        f"    {model}.eval()",
        "    with torch.inference_mode():",
        f"        loss = loss_fn({model}(X), y)",
        f"    {model}.train()",
        "    return float(loss)",
        "",
    ]
    if lbfgs:
        lines += [
            "",
            "def closure():",
            '    """L-BFGS evaluates the loss several times a step: forward, loss, zero_grad,',
            '    backward."""',
            f"    y_pred = {model}({X_fit})",
            f"    loss = loss_fn(y_pred, y_train){penalty}",
            "    optimizer.zero_grad()",
            "    loss.backward()",
            "    return loss",
            "",
        ]
    lines += ["", "for epoch in range(epochs):"]
    body = []
    if t.schedule == "cosine":
        body += [
            "for group in optimizer.param_groups:",
            '    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))',
        ]
    body += ["# Training loop", f"{model}.train()"]
    if lbfgs:
        body += ["loss = optimizer.step(closure)", "train_loss = loss.item()"]
    elif minibatches:
        body += [
            "batch_order = torch.randperm(len(X_train), generator=generator)  # new every epoch",
            "batch_losses, batch_rows = [], []",
            "for i in range(0, len(X_train), batch_size):",
            "    index = batch_order[i : i + batch_size]",
            "    X_batch, y_batch = X_train[index], y_train[index]",
            f"    y_pred = {model}(X_batch)",
            f"    loss = loss_fn(y_pred, y_batch){penalty}",
            "    optimizer.zero_grad()",
            "    loss.backward()",
            "    optimizer.step()",
            "    batch_losses.append(loss.detach())",
            "    batch_rows.append(len(X_batch))",
            "# The epoch's loss: each batch's mean weighted by its rows, the mean over every row",
            "rows = torch.tensor(batch_rows, dtype=torch.float32)",
            "train_loss = float((torch.stack(batch_losses) * rows).sum() / sum(batch_rows))",
        ]
    else:
        body += [
            f"y_pred = {model}({X_fit})",
            f"loss = loss_fn(y_pred, y_train){penalty}",
            "optimizer.zero_grad()",
            "loss.backward()",
            "optimizer.step()",
            "train_loss = loss.item()",
        ]
    if t.tol > 0:
        body += [
            "",
            "# Converged once the training loss has not improved by more than tol for tol_epochs",
            "flat_epochs = flat_epochs + 1 if train_loss > best_train_loss - tol else 0",
            "best_train_loss = min(best_train_loss, train_loss)",
            "stop = stop or flat_epochs >= tol_epochs",
        ]
    if early:
        body += [
            "",
            "# Early stopping: keep the weights of the lowest validation loss",
            "val_loss = loss_of(X_val, y_val)",
            "if val_loss < best_val_loss:",
            "    best_val_loss, bad_epochs = val_loss, 0",
            f"    best_state = {{k: v.detach().clone() for k, v in {model}.state_dict().items()}}",
            "else:",
            "    bad_epochs += 1",
            "    stop = stop or bad_epochs >= patience",
        ]
    body += [
        "",
        f"# Testing loop, every {t.log_every} epochs" + (" (and the last)" if stops else ""),
        f"if epoch % {t.log_every} == 0" + (" or stop:" if stops else ":"),
        '    record = {"epoch": epoch, "train_loss": train_loss}',
    ]
    shown = ["Epoch: {epoch}", "Train loss: {train_loss:.5f}"]
    if n_val:
        body.append(
            '    record["val_loss"] = val_loss'
            if early
            else '    record["val_loss"] = loss_of(X_val, y_val)'
        )
        shown.append("Val loss: {record['val_loss']:.5f}")
    if n_test:
        body.append('    record["test_loss"] = loss_of(X_test, y_test)')
        shown.append("Test loss: {record['test_loss']:.5f}")
    body += [
        "    records.append(record)",
        '    print(f"' + " | ".join(shown) + '")',
    ]
    if stops:
        body += ["if stop:", "    break"]
    lines += [f"    {line}" if line else "" for line in body]
    if early:
        lines += [
            "",
            "if best_state is not None:  # the weights of the epoch with the lowest validation loss",
            f"    {model}.load_state_dict(best_state)",
        ]
    return "\n".join(lines) + "\n"


def _by_column(r: Recipe, minibatches: bool) -> bool:
    """Whether the run trained on its full batch stored column by column (engine.feature_major:
    a linear model of one output, on enough rows of two or more inputs)."""
    one_output = r.spec["kind"] == "linear" and r.spec["out_features"] == 1 and not _categories(r)
    big = r.rows.get("train", 0) >= FEATURE_MAJOR_ROWS and r.spec["in_features"] >= 2
    return one_output and big and not minibatches


# --- 4. Evaluation, 5. saving and loading, 6. the run's files -----------------------------


def _evaluation(r: Recipe) -> str:
    model = _model_name(r)
    split = "test" if r.rows.get("test") else "train"
    scores = (r.summary.get("metrics") or {}).get(split, {})
    lines = [
        f"# 4. Predictions and evaluation, on the {split} rows",
        f"{model}.eval()",
        "with torch.inference_mode():",
        f"    y_preds = {model}(X_{split})",
    ]
    if r.task == "regression":
        truth, predictions = f"y_{split}", "y_preds"
        if _scaled_target(r):
            lines.append("predictions = y_preds * target_std + target_mean  # in y's own units")
            truth = f"y_{split}_values" if split == "test" else f"y_values[{split}_rows]"
            predictions = "predictions"
        lines += [
            f"mae = float(({predictions} - {truth}).abs().mean())",
            f'print(f"{split.capitalize()} MAE: {{mae:.6g}} (the run: {_num(scores.get("mae"))})")',
        ]
        return "\n".join(lines) + "\n"
    e = r.preprocess or {}
    temperature = float(e.get("temperature", 1.0))
    logits = "y_preds" if temperature == 1.0 else f"y_preds / {temperature!r}"
    if r.task == "binary":
        threshold = float(e.get("threshold", 0.5))
        lines += [
            f"y_prob = torch.sigmoid({logits})  # logits to probabilities",
            f"y_label = (y_prob >= {threshold!r}).float()  # the positive class at {threshold:g} or more",
        ]
    else:
        lines += [
            f"y_prob = torch.softmax({logits}, dim=1)  # logits to probabilities",
            "y_label = y_prob.argmax(dim=1)  # the most probable class",
        ]
    lines += [
        f"accuracy = float((y_label == y_{split}).float().mean())",
        f'print(f"{split.capitalize()} accuracy: {{accuracy:.6g}} (the run: {_num(scores.get("accuracy"))})")',
    ]
    return "\n".join(lines) + "\n"


def _num(value: Any) -> str:
    return (
        "?" if not isinstance(value, (int, float)) or not math.isfinite(value) else f"{value:.6g}"
    )


def _saving(r: Recipe) -> str:
    model = _model_name(r)
    cls, _ = _model_class(r)
    split = "test" if r.rows.get("test") else "train"
    return f"""# 5. Saving and loading: the state_dict, as the course saves it
torch.save(obj={model}.state_dict(), f="model.pth")
loaded_{model} = {cls}()
loaded_{model}.load_state_dict(torch.load(f="model.pth", weights_only=True))
loaded_{model}.eval()
with torch.inference_mode():
    loaded_preds = loaded_{model}(X_{split})
print(f"Loaded model predicts identically: {{bool((loaded_preds == y_preds).all())}}")
"""


def _together() -> str:
    return """# 6. Putting it all together: the losses, as the run's metrics.csv holds them
with open("metrics.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(records[0]), lineterminator="\\n")
    writer.writeheader()
    writer.writerows(records)
print("Wrote model.pth and metrics.csv")
"""
