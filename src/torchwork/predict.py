"""Using a saved model: its preprocessing, predictions on new rows, and their metrics.

`torchwork predict`, `evaluate`, `serve` and `export` read models through `Predictor`; the
run itself scores and writes predictions with the same functions, so the numbers agree.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from torchwork.checkpoint import load, read_metadata
from torchwork.errors import ConfigError, DataError, ModelFileError, TorchworkError, one_line
from torchwork.fileio import atomic_path
from torchwork.metrics import classification_metrics, confusion_matrix, regression_metrics
from torchwork.registry import Task

if TYPE_CHECKING:
    from torchwork.kinds.base import Source
    from torchwork.kinds.encoder import Encoder


def outputs_of(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """The model's raw outputs in evaluation mode, as a CPU tensor.

    Rows go through in chunks (the model's `eval_rows`, else data.EVAL_ROWS), so that an
    MLP's or CNN's activations for a large set never exist for every row at once; the chunks
    are always the same, and so are the outputs.
    """
    from torchwork.data import EVAL_ROWS

    was_training = model.training
    model.eval()
    step = getattr(model, "eval_rows", EVAL_ROWS)
    with torch.inference_mode():
        chunks = [_forward(model, X[i : i + step]).cpu() for i in range(0, len(X), step)]
        if not chunks:  # no rows (--test 0): the model's own empty output
            result = model(X).cpu()
        else:
            result = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
    model.train(was_training)
    return result


def _forward(model: nn.Module, X: Any) -> torch.Tensor:
    if len(X) == 1 and not isinstance(X, torch.Tensor):
        # A layer's computation on one row can take another path than on several (a
        # convolution of one picture differed in the last bits, 1e-6): one row goes through
        # as a batch of two, so that `serve` and `predict` of one row give the numbers a
        # file's prediction gives. (The course's models of the line take their own path.)
        return model(X[[0, 0]])[:1]
    return model(X)


@dataclass
class Score:
    """How well outputs match the truth: the metrics, and what they were computed from."""

    metrics: dict[str, float]
    predictions: torch.Tensor | None = None  # regression: in the target's own units
    confusion_matrix: list[list[int]] | None = None  # classification: [true][predicted]


def score(task: Task, encoder: Encoder | None, outputs: torch.Tensor, y_raw: torch.Tensor) -> Score:
    """Metrics of raw model outputs against the true target (its own units, or class indices)."""
    if task == "regression":
        predictions = (
            encoder.decode(outputs)["prediction"] if encoder is not None else outputs.reshape(-1)
        )
        return Score(regression_metrics(predictions, y_raw), predictions=predictions)
    assert encoder is not None  # a classifier is always trained on a table (or a folder)
    decoded = encoder.decode(outputs)
    classes = len(encoder.labels)
    positive = decoded["probabilities"][:, 1] if classes == 2 else None
    metrics = classification_metrics(decoded["index"], y_raw, classes, positive)
    return Score(metrics, confusion_matrix=confusion_matrix(decoded["index"], y_raw, classes))


def prediction_columns(encoder: Encoder, outputs: torch.Tensor) -> dict[str, Any]:
    """Predictions in the data's own terms, as named columns (plus class probabilities)."""
    from torchwork.tables import arrow

    decoded = encoder.decode(outputs)
    if encoder.task == "regression":
        # with --interval, also "lower" and "upper": the split-conformal bounds
        return {name: arrow.from_numpy(values.numpy()) for name, values in decoded.items()}
    columns = {"prediction": arrow.labelled(decoded["index"].numpy(), encoder.labels)}
    probabilities = decoded["probabilities"].numpy()
    for j, label in enumerate(encoder.labels):
        columns[f"probability_{label}"] = arrow.from_numpy(probabilities[:, j])
    return columns


def write_table(table: Any, path: str | Path | None) -> None:
    """A table as CSV (or Parquet, by suffix), atomically; to stdout when path is None."""
    import csv
    import io

    import pyarrow as pa
    import pyarrow.csv as pcsv

    # pyarrow quotes every header name, and every text value it quotes at all: a plain
    # header, then the rows with no quotes unless a value needs them (as the csv module
    # writes, and as a file of rows read back for predictions was written).
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(table.column_names)
    header = buffer.getvalue().encode("utf-8")

    def write(f: Any) -> None:
        f.write(header)
        start = f.tell()
        try:
            pcsv.write_csv(table, f, pcsv.WriteOptions(include_header=False, quoting_style="none"))
        except pa.ArrowInvalid:  # a value holds a delimiter, a quote or a line break
            f.seek(start)
            f.truncate()
            _write_quoted(table, f)

    if path is None:
        out = io.BytesIO()
        write(out)
        sys.stdout.write(out.getvalue().decode("utf-8"))
        return
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise ConfigError(f"cannot write {path}: use a .csv or .parquet file name")
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {path}: folder {path.parent} does not exist")
    with atomic_path(path) as tmp:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            pq.write_table(table, tmp)
        else:
            with open(tmp, "wb") as f:  # straight to the file: no copy of the text in memory
                write(f)


def _write_quoted(table: Any, f: Any) -> None:
    """A table's rows as CSV, each value as pyarrow writes it, quoted only where it holds a
    delimiter, a quote or a line break (pyarrow quotes every text value then)."""
    import csv
    import io

    import pyarrow as pa

    from torchwork.tables import arrow

    for batch in table.to_batches(max_chunksize=65536):
        columns = [
            c if pa.types.is_string(c.type) else arrow.cast(c, pa.string()) for c in batch.columns
        ]
        text = io.StringIO()
        rows = zip(*(c.to_pylist() for c in columns), strict=True)
        csv.writer(text, lineterminator="\n").writerows(rows)
        f.write(text.getvalue().encode("utf-8"))


@dataclass
class Predictor:
    """A saved model with the preprocessing it was trained with."""

    model: nn.Module
    encoder: Encoder | None  # None: models of the line, bare .pth files
    path: Path
    csv: Any = None  # read.CsvFormat: how the training table was written (--decimal, ...)

    @property
    def file_block(self) -> Any:
        """The block of the model's one column when its kind reads files (pictures): such
        a model also takes a file, or a folder of them, as the table it stands for; None
        otherwise."""
        blocks = getattr(self.encoder, "blocks", None)
        if blocks is None or len(blocks) != 1 or not blocks[0].suffixes:
            return None
        return blocks[0]

    def read_files(
        self, data: str | Path, need_target: bool = False, skip_bad: bool = False
    ) -> tuple[Any, Any]:
        """A file, or a folder of them, as the table it stands for, read for this model:
        (table, encoded inputs). A folder to evaluate on is class folders, or the test/ of a
        train/ and test/ folder; its classes must be the model's."""
        import pyarrow as pa

        from torchwork import registry
        from torchwork.kinds.base import Source
        from torchwork.tables.folder import find_files, list_files

        path, block = Path(data), self.file_block
        noun = registry.KINDS[block.kind].noun
        column, target = block.columns[0], self.encoder.target
        if need_target:
            folder = find_files(path, block.suffixes, noun)
            unknown = [name for name in folder.classes if name not in self.encoder.labels]
            split = folder.splits[0] if folder.layout == "classes" else "test"
            if unknown:
                labels = self.encoder.labels
                raise DataError(
                    f"class {unknown[0]} of {folder.folders[split]} is not one this model knows "
                    f"({', '.join(map(str, labels[:10]))}{', ...' if len(labels) > 10 else ''}): "
                    "remove its folder or rename it"
                )
            table = folder.table()
            if folder.layout == "splits":
                test = [i for i, s in enumerate(table.column("split").to_pylist()) if s == "test"]
                table = table.take(pa.array(test, pa.int64()))
            table = table.rename_columns([column, target, *table.column_names[2:]])
            root = folder.root
        else:
            root, files = list_files(path, block.suffixes, noun)
            names = [f.relative_to(root).as_posix() for f in files]
            table = pa.table({column: pa.array(names, pa.string())})
        encoding = self.csv.encoding if self.csv is not None else "utf-8"
        where = Source(str(data), root, skip_bad, encoding, _skipped)
        return self.encode(table, where)  # a folder's labels are its class names, as trained

    def names_files(self, data: str | Path) -> bool:
        """Whether `data` is a folder or a file of a kind that reads files (a picture),
        rather than a table; a model that does not read such files refuses it in one line."""
        from torchwork import registry

        path = Path(data)
        readers = {s: k for k, e in registry.KINDS.items() for s in e.suffixes}
        kind = "folder" if path.is_dir() else readers.get(path.suffix.lower())
        if kind is None:
            return False
        if self.file_block is None:
            what = "a folder" if kind == "folder" else f"a file of {registry.KINDS[kind].noun}"
            raise DataError(
                f"{self.path} learned from rows of a table, and {data} is {what}: give a table file"
            )
        return True

    @property
    def feature_names(self) -> list[str]:
        """The columns a row gives this model, in order (x, or x0, x1, ... without an encoder)."""
        if self.encoder is not None:
            return self.encoder.feature_names
        return input_names(self.model.spec()["in_features"])

    def encode(
        self,
        table: Any,
        where: Source,
        fix: str = "fix or remove those rows",
        also: Sequence[str] = (),
    ) -> tuple[Any, Any]:
        """The one path from rows to model inputs, for files, --x and serve: the feature
        columns (and the columns `also` names, such as the target) checked in one pass
        (missing values, text in number columns), what they name read (files), then the
        features encoded as the model was trained (scaling, categories, ...). Returns (the
        checked table, less any rows dropped with `where.skip_bad`; the model's inputs)."""
        from torchwork.tables.check import check_values
        from torchwork.tables.convert import table_to_tensor

        names = self.feature_names
        keep = self.encoder.takes_missing() if self.encoder is not None else []
        table = check_values(table, [*names, *also], where.name, fix=fix, keep=keep)
        if self.encoder is None:
            return table, table_to_tensor(table, names)
        table, decoded = self.encoder.prepare(table, where)
        return table, self.encoder.transform(table, where, decoded)

    @classmethod
    def from_file(cls, path: str | Path) -> Predictor:
        from torchwork.config import stored_config
        from torchwork.kinds.encoder import Encoder
        from torchwork.tables.read import CsvFormat

        path = Path(path)
        model = load(path)
        encoder = None
        sibling = path.with_suffix(".safetensors")
        if (
            path.suffix.lower() != ".safetensors"
            and sibling.exists()
            and read_metadata(sibling).get("preprocess")
        ):
            raise ModelFileError(
                f"{path} holds only the weights; the columns, scaling and labels of this "
                f"model are in {sibling}: use that file"
            )
        csv = CsvFormat()
        if path.suffix.lower() == ".safetensors":
            metadata = read_metadata(path)
            preprocess = metadata["preprocess"]
            if metadata.get("config"):
                # New rows are written as the training table was (--decimal , and so on).
                csv = CsvFormat.of(stored_config(metadata["config"], str(path)).data)
            try:
                encoder = Encoder.from_dict(preprocess, metadata["model"]) if preprocess else None
            except TorchworkError as e:
                raise DataError(f"{path}: {one_line(e)}") from None
            spec = model.spec()
            if encoder is not None and (
                encoder.model_blocks() != spec.get("blocks")
                or encoder.out_features != spec["out_features"]
            ):
                raise DataError(
                    f"{path}: its preprocessing does not match the model's inputs or outputs"
                )
        return cls(model, encoder, path, csv)

    def read(
        self,
        data: str | Path,
        target: str = "",
        need_target: bool = False,
        skip_bad: bool = False,
        as_written: bool = False,
    ) -> tuple[Any, Any]:
        """Read a table for this model: (table, encoded inputs), with every column checked.
        `as_written`: a CSV's table as the text its cells are written with (`True` stays
        `True`, not `true`), for writing the rows back as they came."""
        from torchwork.tables.check import require_numbers
        from torchwork.tables.convert import table_to_tensor
        from torchwork.tables.read import CsvFormat, read_table, read_text

        source = str(data)
        if self.names_files(data):
            return self.read_files(data, need_target, skip_bad)
        if self.encoder is None and not need_target and str(data).lower().endswith(".npy"):
            import pyarrow as pa

            from torchwork.data import read_features

            X = read_features(data)  # a bare array of feature rows, no target column
            names = input_names(X.shape[1])
            return pa.table({n: X[:, j].numpy() for j, n in enumerate(names)}), X
        table = read_table(data, self.csv or CsvFormat())
        written = read_text(data, self.csv or CsvFormat()) if as_written else None
        if self.encoder is None:
            features = (
                [n for n in table.column_names if n != target]
                if need_target
                else table.column_names
            )
            table = require_numbers(table, table.column_names, source)
            return (table if written is None else written), table_to_tensor(table, features)
        if target and target != self.encoder.target:
            if target not in table.column_names:
                raise DataError(
                    f"target column '{target}' is not in {source}; its columns are {', '.join(table.column_names)}"
                )
            if target in self.encoder.feature_names:
                raise DataError(f"--target '{target}' is one of the model's feature columns")
            if self.encoder.target in table.column_names:
                raise DataError(
                    f"{source} has both '{target}' (--target) and '{self.encoder.target}' (the "
                    "model's target): leave out --target, or remove one of the two columns"
                )
            table = table.rename_columns(
                [self.encoder.target if n == target else n for n in table.column_names]
            )
            written = None
        expected = self.encoder.feature_names
        missing = [n for n in expected if n not in table.column_names]
        if missing and self.file_block is not None:
            from torchwork import registry

            noun = registry.KINDS[self.file_block.kind].noun
            raise DataError(
                f"{self.path} learned from {noun}: give a file or a folder of them, or a table "
                f"whose '{missing[0]}' column names them, not {data}"
            )
        if missing:
            extra = [
                n for n in table.column_names if n not in expected and n != self.encoder.target
            ]
            raise DataError(
                f"{source} lacks the model's column(s) {', '.join(missing)}"
                + (f"; it has other columns {', '.join(extra)}" if extra else "")
                + f"; the model needs {', '.join(expected)}"
            )
        if need_target and self.encoder.target not in table.column_names:
            raise DataError(
                f"{source} has no target column '{self.encoder.target}': name it with --target"
            )
        where = self.source(data, skip_bad)
        also = [self.encoder.target] if need_target else []
        if written is None:
            return self.encode(table, where, also=also)
        import numpy as np

        from torchwork.tables import arrow

        # Each row's number travels with it through the checks, past any rows dropped
        # (--skip-bad), to pick the same rows of the text.
        row = "\0row"
        table = table.append_column(row, arrow.from_numpy(np.arange(table.num_rows)))
        table, X = self.encode(table, where, also=also)
        return written.take(table.column(row)), X

    def from_json(self, column: str, values: list[Any], where: Source) -> Any:
        """A column of JSON values (a request's rows, --x) as its kind takes them, every
        value checked: numbers for a model without an encoder."""
        if self.encoder is None or not hasattr(self.encoder, "blocks"):
            from torchwork.kinds.number import NumberBlock

            return NumberBlock([column], [0.0], [1.0]).from_json(column, values, where)
        block = next(b for b in self.encoder.blocks if column in b.columns)
        return block.from_json(column, values, where)

    def source(self, data: str | Path, skip_bad: bool = False) -> Source:
        """Where a file's rows come from: the file, and its folder for the files a column
        names (read as the training table's text was: --encoding)."""
        from torchwork.kinds.base import Source

        encoding = self.csv.encoding if self.csv is not None else "utf-8"
        return Source(str(data), Path(data).parent, skip_bad, encoding, _stderr)

    def outputs(self, X: Any) -> torch.Tensor:
        if not isinstance(X, torch.Tensor):
            return outputs_of(self.model, X)
        in_features = self.model.spec()["in_features"]
        if X.shape[1] != in_features:
            raise DataError(
                f"the model takes {in_features} feature(s) per row, the input has {X.shape[1]}"
            )
        return outputs_of(self.model, X)


def predict_file(
    model_path: str | Path, data: str | Path, out: str | Path | None = None, skip_bad: bool = False
) -> Any:
    """Predict every row of a table file: its columns in order plus `prediction` (and class
    probabilities). Written to `out` (.csv or .parquet), else printed as CSV. For a model
    of one column of files (pictures), `data` may be such a file or a folder of them: the
    table of their names (`file`, relative to the folder)."""
    predictor = Predictor.from_file(model_path)
    as_csv = out is None or Path(out).suffix.lower() == ".csv"  # text out: the text that came in
    table, X = predictor.read(data, skip_bad=skip_bad, as_written=as_csv)
    result = with_predictions(table, predictor.encoder, predictor.outputs(X))
    write_table(result, out)
    return result


def with_predictions(table: Any, encoder: Encoder | None, outputs: torch.Tensor) -> Any:
    """The input rows with `prediction` (and class probability) columns added. An input
    column is never replaced: where the input has a column of that name already, the new
    one is `prediction_1` (or the next free number)."""
    import pyarrow as pa

    if encoder is None:
        columns = {"prediction": pa.array(outputs.reshape(-1).numpy())}
    else:
        columns = prediction_columns(encoder, outputs)
    for name, column in columns.items():
        free, k = name, 0
        while free in table.column_names:
            k += 1
            free = f"{name}_{k}"
        table = table.append_column(free, column)
    return table


def evaluate_file(
    model_path: str | Path, data: str | Path, target: str = "", skip_bad: bool = False
) -> dict[str, Any]:
    """The metrics of a saved model on a labelled table (or, for a model of files, a folder
    of class folders): {"task", "rows", "target", "metrics", "of", ...}; "of" names what a
    row is ("rows", "images")."""
    from torchwork import registry

    predictor = Predictor.from_file(model_path)
    encoder = predictor.encoder
    if encoder is None:
        from torchwork.tables.convert import table_to_tensor
        from torchwork.tables.read import CsvFormat, read_table

        names = read_table(data, predictor.csv or CsvFormat()).column_names
        target = target or names[-1]
        table, X = predictor.read(data, target=target, need_target=True)
        metrics = score(
            "regression", None, predictor.outputs(X), table_to_tensor(table, [target])
        ).metrics
        return {
            "task": "regression",
            "rows": table.num_rows,
            "target": target,
            "metrics": metrics,
            "of": "rows",
        }
    table, X = predictor.read(data, target=target, need_target=True, skip_bad=skip_bad)
    outputs = predictor.outputs(X)
    if encoder.task == "regression":
        truth = encoder.target_values(table)
    else:
        truth = encoder.label_index(table.column(encoder.target), str(data))
    scored = score(encoder.task, encoder, outputs, truth)
    block = predictor.file_block
    result = {
        "task": encoder.task,
        "rows": table.num_rows,
        "target": encoder.target,
        "metrics": scored.metrics,
        "of": registry.KINDS[block.kind].noun if block is not None else "rows",
    }
    if encoder.task != "regression":
        result["labels"] = encoder.labels
        result["confusion_matrix"] = scored.confusion_matrix
    return result


def check_out_name(path: str | Path, flag: str = "--out") -> Path:
    """An output file name given by a user, refused when it holds a line break or another
    control character (a name no listing shows as typed)."""
    text = str(path)
    if not text.isprintable():
        raise ConfigError(
            f"{flag} {text!r:.80} holds a line break or other control character: give a plain file name"
        )
    return Path(text)


def refuse_overwrite(path: Path, force: bool, named: str = "--out ") -> None:
    """An output file that exists is replaced only with --force, as `run` treats its folder."""
    if path.exists() and not force:
        raise ConfigError(
            f"{named}{path} already exists: choose another --out, or add --force to overwrite it"
        )


def _stderr(line: str) -> None:
    print(line.strip(), file=sys.stderr)


def _skipped(line: str) -> None:
    """What reading a file dropped (--skip-bad), on stderr: "Skipped photos/bad.jpg: ..."."""
    print(line.strip().replace("Dropped ", "Skipped ", 1), file=sys.stderr)


def input_names(count: int) -> list[str]:
    """Column names for the inputs of a model without stored column names (the line)."""
    return ["x"] if count == 1 else [f"x{i}" for i in range(count)]
