"""The command line: parse, call the library, print. No training logic lives here.

torch is imported only inside the commands that need it, so `torchwork --help` is fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from torchwork import __version__
from torchwork.config import DEVICES, LOSSES, MODELS, OPTIMIZERS, RunConfig, coerce, field_hint
from torchwork.errors import TorchworkError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line instead of usage text."""

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


# flag, config field ("section.key"), argparse options, help
RUN_FLAGS: list[tuple[str, str, dict[str, Any], str]] = [
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
    ("--loss", "train.loss", {"choices": LOSSES}, "loss function"),
    ("--optimizer", "train.optimizer", {"choices": OPTIMIZERS}, "optimizer"),
    ("--lr", "train.lr", {"type": float}, "learning rate"),
    ("--momentum", "train.momentum", {"type": float}, "SGD momentum"),
    ("--epochs", "train.epochs", {"type": int}, "number of epochs"),
    ("--batch-size", "train.batch_size", {"type": int}, "rows per step (0: full batch)"),
    (
        "--patience",
        "train.patience",
        {"type": int},
        "early stopping patience in epochs (0: off; needs --val)",
    ),
    ("--log-every", "train.log_every", {"type": int}, "record and print losses every N epochs"),
    ("--seed", "train.seed", {"type": int}, "random seed"),
    ("--device", "train.device", {"choices": DEVICES}, "where to train"),
    ("--out", "out", {"metavar": "DIR"}, "run folder (default: a new folder under runs/)"),
    ("--no-plots", "plots", {"action": "store_const", "const": False}, "skip the PNG pictures"),
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
    for flag, field, options, text in RUN_FLAGS:
        shown = "" if options.get("action") else f" (default: {_default(field)})"
        run.add_argument(flag, dest=field, default=argparse.SUPPRESS, help=text + shown, **options)

    predict = commands.add_parser("predict", help="predict with a saved model")
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
        "--input", metavar="FILE", help="rows from a .csv (with a header) or .npy file"
    )

    inspect = commands.add_parser(
        "inspect", help="show a model file's architecture, parameters and config"
    )
    inspect.add_argument("file", metavar="FILE", help="model file (.safetensors or .pth)")
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The effective config: defaults, then the --config file, then the flags given."""
    config = RunConfig.from_file(args.config) if args.config else RunConfig()
    for _, field, _, _ in RUN_FLAGS:
        if hasattr(args, field):
            section, _, key = field.rpartition(".")
            target = getattr(config, section) if section else config
            value = coerce(getattr(args, field), field_hint(section, key), field)
            setattr(target, key, value)
    return config


def cmd_run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    config.validate()
    if args.print_config:
        print(config.to_toml(), end="")
        return 0
    from torchwork.workflow import run

    run(config, force=args.force)
    return 0


def _parse_rows(values: Sequence[str]) -> list[list[float]]:
    rows = []
    for text in values:
        try:
            rows.append([float(v) for v in text.split(",")])
        except ValueError:
            raise TorchworkError(
                f"--x value '{text}' is not a number (or comma-separated numbers)"
            ) from None
    return rows


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from torchwork.checkpoint import load
    from torchwork.data import read_features
    from torchwork.models import model_spec

    model = load(args.model)
    in_features = model_spec(model)["in_features"]
    if args.input:
        X = read_features(args.input)
    else:
        rows = _parse_rows(args.x)
        if any(len(r) != len(rows[0]) for r in rows):
            raise TorchworkError("every --x row must have the same number of values")
        X = torch.tensor(rows, dtype=torch.float32)
    if X.shape[1] != in_features:
        raise TorchworkError(
            f"the model takes {in_features} feature(s) per row, the input has {X.shape[1]}"
        )
    if not torch.isfinite(X).all():
        raise TorchworkError("the input has NaN or infinite values: give finite numbers")
    with torch.inference_mode():
        y = model(X)
    names = ["x"] if in_features == 1 else [f"x{i}" for i in range(in_features)]
    print(",".join([*names, "prediction"]))
    for xs, ys in zip(X.tolist(), y.tolist(), strict=True):
        print(",".join(_short(v) for v in [*xs, *ys]))
    return 0


def _short(value: float) -> str:
    # The shortest text that reads back as the same float32.
    import numpy as np

    return str(np.float32(value))


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


COMMANDS = {"run": cmd_run, "predict": cmd_predict, "inspect": cmd_inspect}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except TorchworkError as e:
        print(f"torchwork {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("torchwork: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
