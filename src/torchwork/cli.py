"""The command line: parse, call the library, print. No training logic lives here.

torch is imported only inside the commands that need it, so `torchwork --help` is fast.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from torchwork import __version__
from torchwork.config import (
    CATEGORICAL,
    DEVICES,
    LOSSES,
    MODELS,
    OPTIMIZERS,
    TASKS,
    RunConfig,
    read_toml,
)
from torchwork.errors import TorchworkError

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
        "model: params (the course's model_0), linear or mlp",
    ),
    ("--hidden", "model.hidden", {"type": _int_list, "metavar": "N,N"}, "mlp hidden layer sizes"),
    ("--loss", "train.loss", {"choices": LOSSES}, "loss function (auto: by the task)"),
    (
        "--optimizer",
        "train.optimizer",
        {"choices": OPTIMIZERS},
        "optimizer; auto (tables): lbfgs for a linear model, adam for an mlp",
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
        shown = "" if options.get("action") else f" (default: {_default(field)})"
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
            raise TorchworkError(
                "--nproc cannot be used under torchrun: torchrun already started the processes"
            )
        if args.nproc < 1:
            raise TorchworkError(f"--nproc must be at least 1 (got {args.nproc})")
        if not args.resume:
            # Mistakes are one line here, not one per process after the launch.
            config = config_from_args(args).validate()
            if (
                isinstance(config.train.batch_size, int)
                and 0 < config.train.batch_size < args.nproc
            ):
                raise TorchworkError(
                    f"--batch-size {config.train.batch_size} is smaller than --nproc {args.nproc}: "
                    "each process needs at least one row per step"
                )
            from torchwork.report import resolve_run_dir

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
                raise TorchworkError(
                    f"{name} cannot be used with --resume: the run keeps its own config and folder"
                )
        if args.print_config:
            raise TorchworkError(
                "--print-config cannot be used with --resume: see the run's config.toml"
            )
        from torchwork.workflow import RESUME_FIELDS, resume

        for flag, field, _, _ in RUN_FLAGS:
            if field in flags and field not in RESUME_FIELDS:
                raise TorchworkError(
                    f"{flag} cannot change when resuming: it would change the result; only "
                    "--epochs (to train longer), --checkpoint-every, --no-plots and --tensorboard may be given"
                )
        resume(args.resume, flags)
        return 0
    config = config_from_args(args)
    config.validate()
    if args.print_config:
        print(config.to_toml(), end="")
        return 0
    if config.data.path:
        from torchwork.read import prefetch
        from torchwork.report import resolve_run_dir

        resolve_run_dir(config.out, args.force)  # a folder mistake is said before any reading
        prefetch(config.data.path)  # the table is read while torch is imported
    from torchwork.workflow import run

    run(config, force=args.force)
    return 0


def launch_torchrun(nproc: int, argv: Sequence[str]) -> int:
    """`torchwork run --nproc N ...` is `torchrun --standalone --nproc_per_node=N -m torchwork
    run ...`: PyTorch's own launcher starts and watches the processes."""
    import subprocess

    rest = list(argv)
    i = rest.index("--nproc") if "--nproc" in rest else None
    if i is not None:
        del rest[i : i + 2]
    else:
        rest = [a for a in rest if not a.startswith("--nproc=")]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "--",  # everything after this is torchwork's: torchrun's parser must not guess at it
        "torchwork",
        *rest,
    ]
    return subprocess.call(command)


def _parse_rows(values: Sequence[str]) -> list[list[float]]:
    rows = []
    for text in values:
        try:
            rows.append([float(v) for v in text.split(",")])
        except ValueError:
            raise TorchworkError(
                f"--x value '{text}' is not a number (or comma-separated numbers)"
            ) from None
    if any(len(r) != len(rows[0]) for r in rows):
        raise TorchworkError("every --x row must have the same number of values")
    return rows


def cmd_predict(args: argparse.Namespace) -> int:
    from torchwork.predict import (
        Predictor,
        input_names,
        predict_file,
        with_predictions,
        write_table,
    )

    if args.data:
        predict_file(args.model, args.data, args.out)
        if args.out:
            print(f"Wrote predictions for {args.data} to {args.out}", file=sys.stderr)
        return 0
    import pyarrow as pa
    import torch

    from torchwork.tables import check_values

    predictor = Predictor.from_file(args.model)
    rows = _parse_rows(args.x)
    encoder = predictor.encoder
    if encoder is None:
        names = input_names(len(rows[0]))
        table = pa.table({name: [r[j] for r in rows] for j, name in enumerate(names)})
        check_values(table, names, "--x", fix="give finite numbers")
        outputs = predictor.outputs(torch.tensor(rows, dtype=torch.float32))
        write_table(with_predictions(table, None, outputs), args.out)
        return 0
    if any(f.kind != "numeric" for f in encoder.features):
        raise TorchworkError(
            "this model has text columns: give its rows in a file with --data FILE"
        )
    if len(rows[0]) != len(encoder.features):
        raise TorchworkError(
            f"the model takes {len(encoder.features)} value(s) per row ({', '.join(encoder.feature_names)}), "
            f"--x gave {len(rows[0])}"
        )
    table = pa.table({name: [r[j] for r in rows] for j, name in enumerate(encoder.feature_names)})
    check_values(table, encoder.feature_names, "--x", fix="give finite numbers")
    outputs = predictor.outputs(encoder.transform(table, "--x"))
    write_table(with_predictions(table, encoder, outputs), args.out)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from torchwork.predict import evaluate_file
    from torchwork.report import format_metrics_table

    result = evaluate_file(args.model, args.data, args.target or "")
    if args.json:
        from torchwork.report import _finite

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
    from torchwork.checkpoint import load, read_metadata

    model = load(args.file)
    print(f"File: {args.file}")
    print("Architecture:")
    print("  " + repr(model).replace("\n", "\n  "))
    print("Parameters:")
    total = 0
    for name, tensor in model.state_dict().items():
        total += tensor.numel()
        values = tensor.reshape(-1).tolist()
        shown = " ".join(f"{v:.4f}" for v in values[:6]) + (" ..." if len(values) > 6 else "")
        print(f"  {name:<24} shape {list(tensor.shape)!s:<12} {shown}")
    print(f"  total: {total} numbers")
    if str(args.file).lower().endswith(".safetensors"):
        meta = read_metadata(args.file)
        print(
            f"Format: torchwork model format {meta['format_version']}, written by torchwork {meta['torchwork_version']}"
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


def cmd_export(args: argparse.Namespace) -> int:
    from torchwork.export import export_model

    export_model(args.model, args.format, args.out)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from functools import partial

    from torchwork.serve import serve

    # flush: the address line must show at once when the output is a pipe
    serve(args.model, args.host, args.port, log=partial(print, flush=True))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from torchwork.html_report import compare_runs

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
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except TorchworkError as e:
        print(f"torchwork {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", 2)
        print(
            f"torchwork {args.command}: stopped at once; files are complete but the run is not",
            file=sys.stderr,
        )
        return 128 + signum


def entry() -> NoReturn:
    """`torchwork` and `python -m torchwork`: main(), then leave at once.

    By then every file is written, flushed to disk and closed; tearing the interpreter down
    would only free memory and unload modules, which with torch loaded takes most of a
    second here (0.8 s of a 3 s `import torch`). A command that raises still exits the
    usual way, with its traceback.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe: nothing left to tell
        pass
    os._exit(code)


if __name__ == "__main__":
    entry()
