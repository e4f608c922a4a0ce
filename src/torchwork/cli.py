"""The command line: parse, call the library, print. No training logic lives here.

torch is imported only inside the commands that need it, so `torchwork --help` is fast.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from torchwork import __version__, registry
from torchwork.config import (
    CATEGORICAL,
    DEVICES,
    LOSSES,
    MLP_PATIENCE,
    MLP_SPLIT,
    MODELS,
    OPTIMIZERS,
    TABLE_DEFAULTS,
    TABLE_VAL_PATIENCE,
    TASKS,
    RunConfig,
    read_toml,
)
from torchwork.errors import ConfigError, DataError, ModelFileError, RunFolderError, TorchworkError

if TYPE_CHECKING:
    from torchwork.tables.encode import TableEncoder

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line instead of usage text, and takes
    flags only as spelled (an abbreviation such as --npro would survive into child runs)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes such as 64,64, got '{text}'") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected sizes such as 64,64, got '{text}'")
    return values


def _or_auto(kind: type) -> Any:
    """An argparse type for a number that may also be 'auto'."""

    def parse(text: str) -> Any:
        if text == "auto":
            return text
        try:
            return kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what} or auto, got '{text}'") from None

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _name_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected column names such as a,b,c, got '{text}'")
    return names


# flag, config field ("section.key"), argparse options, help
def _choices(entries: dict[str, registry.Entry]) -> str:
    """A registry's names for --help, each with its note: "l1 (the course's), mse, ..."."""
    return ", ".join(f"{name} ({e.help})" if e.help else name for name, e in entries.items())


RUN_FLAGS: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "--data",
        "data.path",
        {"metavar": "FILE"},
        "learn from a table: .csv .tsv .parquet .xlsx .npy .npz (default: the line)",
    ),
    (
        "--target",
        "data.target",
        {"metavar": "COL"},
        "the table's target column (default: the last)",
    ),
    (
        "--features",
        "data.features",
        {"type": _name_list, "metavar": "A,B"},
        "feature columns (default: all but the target)",
    ),
    (
        "--exclude",
        "data.exclude",
        {"type": _name_list, "metavar": "A,B"},
        "columns to leave out, such as IDs",
    ),
    (
        "--max-categories",
        "data.max_categories",
        {"type": int, "metavar": "N"},
        "keep a text column's N most frequent categories, the rest as one 'other' (0: all)",
    ),
    (
        "--delimiter",
        "data.delimiter",
        {"metavar": "CHAR"},
        "CSV field separator (auto: found from the first lines: , ; tab |)",
    ),
    ("--decimal", "data.decimal", {"metavar": "CHAR"}, "CSV decimal mark: . or , (3,14)"),
    ("--encoding", "data.encoding", {"metavar": "NAME"}, "CSV text encoding, e.g. latin-1"),
    (
        "--task",
        "data.task",
        {"choices": TASKS},
        "auto picks regression, binary or multiclass from the target",
    ),
    (
        "--dropna",
        "data.dropna",
        {"action": "store_const", "const": True},
        "drop rows with empty or NaN cells",
    ),
    (
        "--categorical",
        "data.categorical",
        {"choices": CATEGORICAL},
        "one-hot encode text columns (auto) or refuse them (none)",
    ),
    (
        "--no-scale",
        "data.scale",
        {"action": "store_const", "const": False},
        "do not standardize table features",
    ),
    (
        "--no-scale-target",
        "data.scale_target",
        {"action": "store_const", "const": False},
        "do not standardize a regression target",
    ),
    ("--weight", "data.weight", {"type": float}, "true weight of the line y = weight * X + bias"),
    ("--bias", "data.bias", {"type": float}, "true bias of the line"),
    ("--start", "data.start", {"type": float}, "first X value"),
    ("--end", "data.end", {"type": float}, "X stops before this value"),
    ("--step", "data.step", {"type": float}, "distance between X values"),
    ("--noise", "data.noise", {"type": float}, "std of Gaussian noise added to y"),
    ("--train", "data.train", {"type": float}, "fraction of rows for training"),
    ("--val", "data.val", {"type": float}, "fraction of rows for validation (0: none)"),
    ("--test", "data.test", {"type": float}, "fraction of rows for testing"),
    (
        "--shuffle",
        "data.shuffle",
        {"action": "store_const", "const": True},
        "shuffle rows (seeded) before splitting",
    ),
    (
        "--model",
        "model.kind",
        {"choices": MODELS},
        "model: " + _choices(registry.MODELS),
    ),
    ("--hidden", "model.hidden", {"type": _int_list, "metavar": "N,N"}, "mlp hidden layer sizes"),
    (
        "--loss",
        "train.loss",
        {"choices": LOSSES},
        f"loss function: {_choices(registry.LOSSES)}; auto: by the task",
    ),
    (
        "--optimizer",
        "train.optimizer",
        {"choices": OPTIMIZERS},
        f"optimizer: {_choices(registry.OPTIMIZERS)}; auto (tables): lbfgs for a linear "
        "model, adam for an mlp",
    ),
    ("--lr", "train.lr", {"type": _or_auto(float)}, "learning rate (auto: by the optimizer)"),
    ("--momentum", "train.momentum", {"type": float}, "SGD momentum"),
    ("--epochs", "train.epochs", {"type": int}, "number of epochs"),
    (
        "--batch-size",
        "train.batch_size",
        {"type": _or_auto(int)},
        "rows per step (0: full batch; auto, for tables: minibatches for an mlp on many rows)",
    ),
    (
        "--patience",
        "train.patience",
        {"type": int},
        "early stopping patience in epochs (0: off; needs --val)",
    ),
    (
        "--tol",
        "train.tol",
        {"type": float},
        "stop as converged when the training loss improves by no more than this for "
        "--tol-epochs epochs (0: off; tables: 1e-4 unless --epochs is given)",
    ),
    (
        "--tol-epochs",
        "train.tol_epochs",
        {"type": int},
        "epochs in a row without such an improvement before stopping",
    ),
    ("--log-every", "train.log_every", {"type": int}, "record and print losses every N epochs"),
    (
        "--eval-every",
        "train.eval_every",
        {"type": int},
        "also compute the test loss every N epochs, as the course does (0: when recording)",
    ),
    (
        "--checkpoint-every",
        "train.checkpoint_every",
        {"type": int},
        "write a resume checkpoint every N epochs (0: every 30 seconds, and at the end)",
    ),
    ("--seed", "train.seed", {"type": int}, "random seed"),
    ("--device", "train.device", {"choices": DEVICES}, "where to train"),
    ("--out", "out", {"metavar": "DIR"}, "run folder (default: a new folder under runs/)"),
    ("--no-plots", "plots", {"action": "store_const", "const": False}, "skip the PNG pictures"),
    (
        "--no-reference",
        "reference",
        {"action": "store_const", "const": False},
        "skip the closed-form (or majority-class) reference",
    ),
    (
        "--tensorboard",
        "tensorboard",
        {"action": "store_const", "const": True},
        "also log the losses for TensorBoard (needs torchwork[tensorboard])",
    ),
]


def _default(field: str) -> Any:
    section, _, key = field.rpartition(".")
    value = getattr(getattr(RunConfig(), section) if section else RunConfig(), key)
    return ",".join(map(str, value)) if isinstance(value, list) else value


def _shown_default(field: str, options: dict[str, Any], text: str) -> str:
    """' (default: 300; tables: until converged, at most 500)': the default for the line
    and, where a table run gets another (config.TABLE_DEFAULTS, RunConfig.layered), that
    one too; nothing where the help text says it already."""
    if "(default" in text:
        return ""
    table = _TABLE_WORDS.get(field)
    if table is None and field in TABLE_DEFAULTS and TABLE_DEFAULTS[field] != _default(field):
        table = _plain(TABLE_DEFAULTS[field])
    if options.get("action"):  # an on/off flag: off unless tables turn it on
        return " (tables: on)" if TABLE_DEFAULTS.get(field) == options.get("const") else ""
    line = _default(field)
    if line == "":
        return ""
    if table is None or "tables" in text:
        return f" (default: {_plain(line)})"
    return f" (default: {_plain(line)}; tables: {table})"


# Table defaults that a plain value would misstate.
_TABLE_WORDS = {
    "train.epochs": f"until converged, at most {TABLE_DEFAULTS['train.epochs']}",
    "train.patience": f"{TABLE_VAL_PATIENCE} with --val, {MLP_PATIENCE} for an mlp",
    "data.train": f"{MLP_SPLIT[0]:g} for an mlp",
    "data.val": f"{MLP_SPLIT[1]:g} for an mlp",
}


def _plain(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="torchwork",
        description="The PyTorch workflow in one command: data, model, training and testing "
        "loops, evaluation with pictures, safe saving and loading.",
        epilog="Start with: torchwork run --epochs 100 (the course's numbers).",
    )
    parser.add_argument("--version", action="version", version=f"torchwork {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser(
        "run",
        help="train and evaluate a model; write a run folder",
        description="Run the six steps: data, model, training, evaluation, saving, the run folder. "
        "Flags override the --config file, which overrides the defaults.",
    )
    run.add_argument("--config", metavar="FILE", help="TOML config file (flags win over it)")
    run.add_argument(
        "--print-config", action="store_true", help="print the effective config as TOML and exit"
    )
    run.add_argument("--force", action="store_true", help="overwrite a non-empty --out folder")
    run.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train data-parallel in N processes on this machine (runs torchrun for you)",
    )
    run.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR from its last checkpoint (with --epochs N to train longer)",
    )
    for flag, field, options, text in RUN_FLAGS:
        shown = _shown_default(field, options, text)
        if not options.get("action") and not options.get("choices"):
            # --epochs EPOCHS, not the config field's name (--epochs TRAIN.EPOCHS)
            options = {"metavar": flag.lstrip("-").upper().replace("-", "_"), **options}
        run.add_argument(flag, dest=field, default=argparse.SUPPRESS, help=text + shown, **options)

    predict = commands.add_parser("predict", help="predict with a saved model")
    # Rows such as --x -1.5,2 are values, not flags (argparse only knows plain negatives).
    predict._negative_number_matcher = re.compile(r"^-\.?\d")  # type: ignore[attr-defined]
    predict.add_argument(
        "--model", required=True, metavar="FILE", help="model file (.safetensors or .pth)"
    )
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--x",
        nargs="+",
        metavar="X",
        help="input rows: one number per row for one feature, or comma-separated values per row",
    )
    source.add_argument(
        "--data",
        "--input",
        dest="data",
        metavar="FILE",
        help="rows from a table file (.csv .tsv .parquet .xlsx .npy); columns matched by name",
    )
    predict.add_argument(
        "--out",
        metavar="FILE",
        help="write the rows with predictions to a .csv or .parquet file (default: print CSV)",
    )
    predict.add_argument("--force", action="store_true", help="overwrite an existing --out file")

    evaluate = commands.add_parser("evaluate", help="metrics of a saved model on a labelled table")
    evaluate.add_argument(
        "--model",
        required=True,
        metavar="FILE",
        help="model file (.safetensors; .pth for the line)",
    )
    evaluate.add_argument("--data", required=True, metavar="FILE", help="a labelled table")
    evaluate.add_argument(
        "--target",
        metavar="COL",
        help="the target column's name in this file (default: the model's)",
    )
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")

    export = commands.add_parser(
        "export", help="export a saved model to ONNX or a torch.export program, checked on the spot"
    )
    export.add_argument(
        "--model",
        required=True,
        metavar="FILE",
        help="model file (.safetensors keeps the preprocessing; .pth is the bare model)",
    )
    export.add_argument(
        "--format",
        required=True,
        choices=("onnx", "pt2"),
        help="onnx (needs torchwork[onnx]) or pt2 (torch.export)",
    )
    export.add_argument(
        "--out", metavar="FILE", help="output file (default: the model file with .onnx or .pt2)"
    )

    serve = commands.add_parser("serve", help="answer prediction requests over HTTP (JSON)")
    serve.add_argument(
        "--model", required=True, metavar="FILE", help="model file (.safetensors or .pth)"
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only)",
    )
    serve.add_argument(
        "--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)"
    )

    compare = commands.add_parser(
        "compare", help="compare run folders: config differences, final metrics, loss curves"
    )
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR", help="two or more run folders")
    compare.add_argument("--out", metavar="FILE", help="draw every run's loss curves in one PNG")
    compare.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page")

    inspect = commands.add_parser(
        "inspect", help="show a model file's architecture, parameters and config"
    )
    inspect.add_argument("file", metavar="FILE", help="model file (.safetensors or .pth)")
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The effective config: defaults, then the --config file, then the flags given."""
    file = read_toml(args.config) if args.config else {}
    flags = {field: getattr(args, field) for _, field, _, _ in RUN_FLAGS if hasattr(args, field)}
    return RunConfig.layered(file, flags, source=args.config or "config")


def cmd_run(args: argparse.Namespace) -> int:
    flags = {field: getattr(args, field) for _, field, _, _ in RUN_FLAGS if hasattr(args, field)}
    if args.nproc is not None:
        from torchwork.distributed import launched

        if launched():
            raise ConfigError(
                "--nproc cannot be used under torchrun: torchrun already started the processes"
            )
        if args.nproc < 1:
            raise ConfigError(f"--nproc must be at least 1 (got {args.nproc})")
        if not args.resume:
            # Mistakes are one line here, not one per process after the launch.
            config = config_from_args(args).validate()
            if (
                isinstance(config.train.batch_size, int)
                and 0 < config.train.batch_size < args.nproc
            ):
                raise ConfigError(
                    f"--batch-size {config.train.batch_size} is smaller than --nproc {args.nproc}: "
                    "each process needs at least one row per step"
                )
            from torchwork.runfolder import resolve_run_dir

            if config.out:
                resolve_run_dir(config.out, args.force)
        return launch_torchrun(args.nproc, args.argv)
    if args.resume:
        for given, name in (
            (args.config, "--config"),
            (args.force, "--force"),
            ("out" in flags, "--out"),
        ):
            if given:
                raise ConfigError(
                    f"{name} cannot be used with --resume: the run keeps its own config and folder"
                )
        if args.print_config:
            raise ConfigError(
                "--print-config cannot be used with --resume: see the run's config.toml"
            )
        from torchwork.workflow.checkpoints import RESUME_FIELDS
        from torchwork.workflow.session import resume

        for flag, field, _, _ in RUN_FLAGS:
            if field in flags and field not in RESUME_FIELDS:
                raise ConfigError(
                    f"{flag} cannot change when resuming: it would change the result; only "
                    "--epochs (to train longer), --checkpoint-every, --no-plots and --tensorboard may be given"
                )
        _check_resume_folder(args.resume)
        resume(args.resume, flags)
        return 0
    config = config_from_args(args)
    config.validate()
    if args.print_config:
        print(config.to_toml(), end="")
        return 0
    if config.data.path:
        from torchwork.runfolder import resolve_run_dir
        from torchwork.tables.read import CsvFormat, prefetch

        resolve_run_dir(config.out, args.force)  # a folder mistake is said before any reading
        prefetch(config.data.path, CsvFormat.of(config.data))  # read while torch is imported
    from torchwork.workflow.session import run

    run(config, force=args.force)
    return 0


def _check_resume_folder(folder: str) -> None:
    """--resume names a run folder: a file or a folder no run wrote is said as such (a run
    folder without a checkpoint is workflow.session.resume's to explain)."""
    from pathlib import Path

    from torchwork.runfolder import CHECKPOINT_LAST, RUN_FILES, RUN_FOLDERS

    path = Path(folder)
    if path.is_file():
        raise RunFolderError(
            f"--resume {path} is a file: give the run folder it is in, {path.parent}"
        )
    if path.is_dir() and not any((path / name).exists() for name in (*RUN_FILES, *RUN_FOLDERS)):
        raise RunFolderError(
            f"--resume {path} is not a run folder: it has no {CHECKPOINT_LAST} (nor anything "
            "else a run writes); give the folder of a run that wrote a checkpoint"
        )


def launch_torchrun(nproc: int, argv: Sequence[str]) -> int:
    """`torchwork run --nproc N ...` is `torchrun --standalone --nproc_per_node=N -m torchwork
    run ...`: PyTorch's own launcher starts and watches the processes, from this process
    (see distributed.launch)."""
    from torchwork.distributed import launch

    rest = list(argv)
    i = rest.index("--nproc") if "--nproc" in rest else None
    if i is not None:
        del rest[i : i + 2]
    else:
        rest = [a for a in rest if not a.startswith("--nproc=")]
    return launch(nproc, rest)


def _parse_rows(values: Sequence[str]) -> list[list[float]]:
    rows = []
    for text in values:
        try:
            rows.append([float(v) for v in text.split(",")])
        except ValueError:
            raise DataError(
                f"--x value '{text}' is not a number (or comma-separated numbers)"
            ) from None
    if any(len(r) != len(rows[0]) for r in rows):
        raise DataError("every --x row must have the same number of values")
    return rows


def _check_row_width(rows: list[list[float]], width: int, encoder: TableEncoder | None) -> None:
    """--x rows as wide as the model's inputs; else say how to write one row."""
    given = len(rows[0])
    if given == width:
        return
    from torchwork.models import few

    names = f" ({few(encoder.feature_names, 6)})" if encoder is not None else ""
    values = [f"{v:g}" for row in rows for v in row]
    if width == 1:
        raise DataError(
            f"the model takes 1 feature per row{names}, --x gave {given}: give one number per "
            f"row, such as --x {' '.join(values[:3])}"
        )
    example = values[:width] if len(values) >= width else ["0.5", "0.9", "1.3"][:width]
    example += ["0"] * (width - len(example))
    said = (
        f"--x gave {len(rows)} rows of one value each"
        if given == 1 and len(rows) > 1
        else f"--x gave {given} value(s) per row"
    )
    raise DataError(
        f"the model takes {width} features per row{names}, {said}: write each row as "
        f"comma-separated values, such as --x {','.join(example)}"
    )


def cmd_predict(args: argparse.Namespace) -> int:
    from torchwork.predict import (
        Predictor,
        check_out_name,
        predict_file,
        with_predictions,
        write_table,
    )

    if args.out is not None:
        out = check_out_name(args.out)
        if out.is_dir():
            raise ConfigError(f"--out {out} is a folder: give a .csv or .parquet file name")
        if out.exists() and not args.force:
            raise ConfigError(
                f"--out {out} already exists: choose another --out, or add --force to overwrite it"
            )
    if args.data:
        predict_file(args.model, args.data, args.out)
        if args.out:
            print(f"Wrote predictions for {args.data} to {args.out}", file=sys.stderr)
        return 0
    import pyarrow as pa

    predictor = Predictor.from_file(args.model)
    rows = _parse_rows(args.x)
    encoder = predictor.encoder
    if encoder is not None and any(f.kind != "numeric" for f in encoder.features):
        raise DataError("this model has text columns: give its rows in a file with --data FILE")
    _check_row_width(rows, predictor.model.spec()["in_features"], encoder)
    names = predictor.feature_names
    table = pa.table({name: [r[j] for r in rows] for j, name in enumerate(names)})
    outputs = predictor.outputs(predictor.encode(table, "--x", fix="give finite numbers"))
    write_table(with_predictions(table, encoder, outputs), args.out)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from torchwork.predict import evaluate_file
    from torchwork.report.text import format_metrics_table

    result = evaluate_file(args.model, args.data, args.target or "")
    if args.json:
        from torchwork.runfolder import _finite

        print(json.dumps(_finite(result), indent=2))
        return 0
    print(f"{result['task']} on {result['rows']} rows of {args.data} (target '{result['target']}')")
    print(format_metrics_table({"data": result["metrics"]}))
    if "confusion_matrix" in result:
        labels = [str(v) for v in result["labels"]]
        width = max(8, *(len(v) + 2 for v in labels))
        print("Confusion matrix (rows: actual, columns: predicted)")
        print(" " * width + "".join(f"{v:>{width}}" for v in labels))
        for label, row in zip(labels, result["confusion_matrix"], strict=True):
            print(f"{label:>{width}}" + "".join(f"{n:>{width}}" for n in row))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from pathlib import Path

    from torchwork.checkpoint import load, read_metadata, read_torch_file, stored_spec
    from torchwork.models import describe, model_spec
    from torchwork.runfolder import INSPECTABLE

    path = Path(args.file)
    if path.is_dir():
        inside = [n for n in INSPECTABLE if (path / n).is_file()]
        raise ModelFileError(
            f"{path} is a folder: inspect {path / inside[0]}"
            if inside
            else f"{path} is a folder, and holds no model file or checkpoint: give a file"
        )
    if path.suffix.lower() in (".pt", ".pth"):
        kind, contents = read_torch_file(path)
        if kind == "checkpoint":
            return _inspect_checkpoint(path, contents)
    model = load(path)
    print(f"File: {path}")
    if path.suffix.lower() == ".safetensors":
        print(f"Model: {describe(stored_spec(path))}")
    else:
        spec = model_spec(model)
        unknown = " (a .pth file does not say what it predicts)" if spec["kind"] != "params" else ""
        print(f"Model: {describe(spec)}{unknown}")
    _print_parameters(model)
    if path.suffix.lower() == ".safetensors":
        meta = read_metadata(path)
        written = meta["torchwork_version"]
        written = written if isinstance(written, str) and _plain_text(written) else "?"
        print(
            f"Format: torchwork model format {meta['format_version']}, written by torchwork {written}"
        )
        if meta["config"]:
            print("Stored config:")
            print(
                "  " + RunConfig.from_dict(meta["config"]).to_toml().strip().replace("\n", "\n  ")
            )
    else:
        print(
            "Stored config: none (a .pth file holds only the state_dict; .safetensors files keep the config)"
        )
    return 0


def _inspect_checkpoint(path: Any, contents: dict[str, Any]) -> int:
    """A resume checkpoint: where the run stands, its model and its config."""
    from torchwork.config import stored_config
    from torchwork.models import build_from_spec, describe, spec_from_state_dict

    config = stored_config(contents["config"], str(path))
    spec = spec_from_state_dict(contents["model"])
    # A checkpoint keeps the config as given: the task is known from it, or else from the
    # loss or the number of outputs, or else only the data knew it.
    task = (
        "regression"
        if not config.data.path
        else config.data.task
        if config.data.task != "auto"
        else {"bce": "binary", "ce": "multiclass"}.get(config.train.loss)
        or ("multiclass" if spec["out_features"] > 1 else None)
    )
    model = build_from_spec({**spec, "task": task} if task and spec["kind"] == "linear" else spec)
    model.load_state_dict(contents["model"])
    written = contents.get("torchwork_version")
    written = written if isinstance(written, str) and _plain_text(written) else "?"
    print(f"File: {path}")
    print(
        f"Resume checkpoint: torchwork checkpoint format {contents['format_version']}, written by "
        f"torchwork {written}"
    )
    print(
        f"Epochs trained: {contents['epoch']} of {config.train.epochs} (continue with: torchwork "
        f"run --resume {path.parent}, and --epochs N to train longer)"
    )
    print(
        f"Model: {describe(spec, task)}"
        if task
        else f"Model: {spec['kind']} model on {spec['in_features']} inputs, one output (for "
        "regression or binary classification, as the data decided)"
    )
    _print_parameters(model)
    print(f"Config: {_config_summary(config)}")
    return 0


def _config_summary(config: RunConfig) -> str:
    from torchwork.models import few

    d, m, t = config.data, config.model, config.train
    data = (
        f"table {few([d.path])}" + (f", target {few([d.target])}" if d.target else "")
        if d.path
        else f"the line y = {d.weight:g} * X + {d.bias:g}, X from {d.start:g} to {d.end:g} by {d.step:g}"
    )
    model = m.kind + (f" (hidden {','.join(map(str, m.hidden))})" if m.kind == "mlp" else "")
    return (
        f"data {data}; model {model}; loss {t.loss}; optimizer {t.optimizer} (lr {t.lr}); "
        f"epochs {t.epochs}; batch size {t.batch_size}; seed {t.seed}"
    )


def _print_parameters(model: Any) -> None:
    print("Architecture:")
    print("  " + repr(model).replace("\n", "\n  "))
    print("Parameters:")
    total = 0
    for name, tensor in model.state_dict().items():
        total += tensor.numel()
        values = tensor.reshape(-1)[:7].tolist()  # a few, not a list of every number
        shown = " ".join(f"{v:.4f}" for v in values[:6]) + (" ..." if len(values) > 6 else "")
        print(f"  {name:<24} shape {list(tensor.shape)!s:<12} {shown}")
    print(f"  total: {total} numbers")


def _plain_text(text: str, limit: int = 40) -> bool:
    # Text from a file, shown as is only when short and printable (no terminal escapes).
    return len(text) <= limit and text.isprintable()


def cmd_export(args: argparse.Namespace) -> int:
    from torchwork.export import export_model

    export_model(args.model, args.format, args.out)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from functools import partial

    from torchwork.serve.server import serve

    # flush: the address line must show at once when the output is a pipe
    serve(args.model, args.host, args.port, log=partial(print, flush=True))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from torchwork.report.compare import compare_runs

    print(compare_runs(args.runs, out_png=args.out, out_html=args.html))
    return 0


COMMANDS = {
    "run": cmd_run,
    "predict": cmd_predict,
    "evaluate": cmd_evaluate,
    "inspect": cmd_inspect,
    "export": cmd_export,
    "serve": cmd_serve,
    "compare": cmd_compare,
}


def main(argv: Sequence[str] | None = None) -> int:
    from torchwork.distributed import follow_launcher, say_last

    follow_launcher()  # a process of `run --nproc` ends with its launcher, even a killed one
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except TorchworkError as e:
        say_last(f"torchwork {args.command}: error: {e}")
        return e.exit_code
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", 2)
        say_last(
            f"torchwork {args.command}: stopped at once; files are complete but the run is not"
        )
        return 128 + signum


def entry() -> NoReturn:
    """`torchwork` and `python -m torchwork`: main(), then leave at once, however it ends.

    By then every file is written, flushed to disk and closed; tearing the interpreter down
    would only free memory and unload modules, which with torch loaded takes most of a
    second here (0.8 s of a 3 s `import torch`). It can also abort the process while other
    threads still run native code (a table still being read when an error is raised). So a
    usage error (SystemExit) and a crash, printed with its traceback, leave this way too,
    with the exit code Python would give.
    """
    try:
        code = main()
    except SystemExit as e:  # argparse: usage errors, --help, --version
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:  # Ctrl-C before a command started
        code = 130
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe: nothing left to tell
        pass
    os._exit(code)


if __name__ == "__main__":
    entry()
