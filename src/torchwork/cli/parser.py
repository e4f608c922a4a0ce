"""The command line's parser: every flag of `run` (RUN_FLAGS) with its config field and
help, the other commands' flags, and the config a set of flags makes."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any, NoReturn

from torchwork import __version__, registry
from torchwork.config import (
    AUGMENTS,
    AUTO_TOL,
    CATEGORICAL,
    DEVICES,
    FOLDER_DEFAULTS,
    L2_C_DEFAULT,
    L2_C_GRID,
    LOSSES,
    MLP_PATIENCE,
    MLP_SPLIT,
    MODELS,
    OPTIMIZERS,
    SCHEDULES,
    SERVE_MAX_PIXELS,
    TABLE_DEFAULTS,
    TABLE_VAL_PATIENCE,
    TASKS,
    THRESHOLD_METRICS,
    RunConfig,
    read_toml,
)
from torchwork.settings import SETTINGS, setting_name

if TYPE_CHECKING:
    pass


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


def _or_auto(kind: type, *words: str) -> Any:
    """An argparse type for a number that may also be 'auto' (or one of `words`)."""

    def parse(text: str) -> Any:
        if text in ("auto", *words):
            return text
        try:
            return kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            also = "".join(f", {w}" for w in words)
            raise argparse.ArgumentTypeError(
                f"expected {what}{also} or auto, got '{text}'"
            ) from None

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _name_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected column names such as a,b,c, got '{text}'")
    return names


def _choices(entries: dict[str, registry.Entry]) -> str:
    """A registry's names for --help, each with its note: "l1 (the course's), mse, ..."."""
    return ", ".join(f"{name} ({e.help})" if e.help else name for name, e in entries.items())


# Every flag of `run` that sets a config field: flag, argparse options, help
_RUN_FLAGS: list[tuple[str, dict[str, Any], str]] = [
    (
        "--data",
        {"metavar": "PATH"},
        "learn from a table (.csv .tsv .parquet .xlsx .npy .npz) or a folder of images or .txt "
        "files, one sub-folder per class (or train/ and test/ of them) (default: the line)",
    ),
    (
        "--image-size",
        {"type": int, "metavar": "N"},
        "images: resize each to N x N pixels (0: auto, 64 or less for small pictures)",
    ),
    (
        "--channels",
        {"type": int, "choices": (1, 3)},
        "images: 3 (RGB) or 1 (grey)",
    ),
    (
        "--augment",
        {"choices": AUGMENTS},
        "images: flip (random flips, small shifts), shift (no flips: text), none",
    ),
    (
        "--skip-bad",
        {"action": "store_const", "const": True},
        "images and text files: drop those that cannot be read, and say how many (else they "
        "are an error)",
    ),
    (
        "--target",
        {"metavar": "COL"},
        "the table's target column (default: the last)",
    ),
    (
        "--features",
        {"type": _name_list, "metavar": "A,B"},
        "feature columns (default: all but the target)",
    ),
    (
        "--exclude",
        {"type": _name_list, "metavar": "A,B"},
        "columns to leave out, such as IDs",
    ),
    (
        "--kind",
        {"type": _name_list, "metavar": "COL=KIND"},
        "a column's kind of data, over what torchwork recognises: "
        + ", ".join(registry.KINDS)
        + " (e.g. zip=category,review=text)",
    ),
    (
        "--max-categories",
        {"type": int, "metavar": "N"},
        "keep a text column's N most frequent categories, the rest as one 'other' (0: all)",
    ),
    (
        "--delimiter",
        {"metavar": "CHAR"},
        "CSV field separator (auto: found from the first lines: , ; tab |)",
    ),
    ("--decimal", {"metavar": "CHAR"}, "CSV decimal mark: . or , (3,14)"),
    ("--encoding", {"metavar": "NAME"}, "CSV text encoding, e.g. latin-1"),
    (
        "--task",
        {"choices": TASKS},
        "auto picks regression, binary or multiclass from the target",
    ),
    (
        "--dropna",
        {"action": "store_const", "const": True},
        "drop rows with empty or NaN cells",
    ),
    (
        "--na-values",
        {"type": _name_list, "metavar": "A,B"},
        "more cell texts that mean a missing value, such as unknown,? (empty cells, NA and NaN "
        "always do)",
    ),
    (
        "--categorical",
        {"choices": CATEGORICAL},
        "encode columns of a few distinct values as categories (auto) or refuse them (none)",
    ),
    (
        "--no-scale",
        {"action": "store_const", "const": False},
        "do not standardize table features",
    ),
    (
        "--no-scale-target",
        {"action": "store_const", "const": False},
        "do not standardize a regression target",
    ),
    ("--weight", {"type": float}, "true weight of the line y = weight * X + bias"),
    ("--bias", {"type": float}, "true bias of the line"),
    ("--start", {"type": float}, "first X value"),
    ("--end", {"type": float}, "X stops before this value"),
    ("--step", {"type": float}, "distance between X values"),
    ("--noise", {"type": float}, "std of Gaussian noise added to y"),
    ("--train", {"type": float}, "fraction of rows for training"),
    ("--val", {"type": float}, "fraction of rows for validation (0: none)"),
    ("--test", {"type": float}, "fraction of rows for testing"),
    (
        "--shuffle",
        {"action": "store_const", "const": True},
        "shuffle rows (seeded) before splitting",
    ),
    (
        "--model",
        {"choices": MODELS},
        "model: " + _choices(registry.MODELS),
    ),
    (
        "--hidden",
        {"type": _int_list, "metavar": "N,N"},
        "mlp hidden layer sizes; cnn block widths; tinyvgg channels",
    ),
    (
        "--loss",
        {"choices": LOSSES},
        f"loss function: {_choices(registry.LOSSES)}; auto: by the task",
    ),
    (
        "--optimizer",
        {"choices": OPTIMIZERS},
        f"optimizer: {_choices(registry.OPTIMIZERS)}; auto (tables): lbfgs for a linear "
        "model, adam for an mlp",
    ),
    ("--lr", {"type": _or_auto(float)}, "learning rate (auto: by the optimizer)"),
    ("--momentum", {"type": float}, "SGD momentum"),
    ("--epochs", {"type": int}, "number of epochs"),
    (
        "--batch-size",
        {"type": _or_auto(int)},
        "rows per step (0: full batch; auto, for tables: minibatches for an mlp on many rows)",
    ),
    (
        "--schedule",
        {"choices": SCHEDULES},
        "learning rate: none (constant) or cosine (decays to 0 over --epochs)",
    ),
    (
        "--patience",
        {"type": _or_auto(int)},
        "early stopping patience in epochs (0: off; needs --val; auto: "
        f"{TABLE_VAL_PATIENCE}, but 0 for a linear model trained by L-BFGS, which runs to "
        "convergence)",
    ),
    (
        "--l2-c",
        {"type": _or_auto(float, "none"), "metavar": "C"},
        "a linear classifier's L2 penalty on its weights, as scikit-learn's LogisticRegression "
        "C: the mean loss plus ||weights||² / (2 C training rows), on the standardized inputs; "
        "smaller C, a stronger penalty; none: no penalty; auto: the C of "
        + ", ".join(f"{c:g}" for c in L2_C_GRID)
        + f" with the lowest validation loss (each fitted to convergence), {L2_C_DEFAULT:g} "
        "without --val",
    ),
    (
        "--tol",
        {"type": _or_auto(float)},
        "stop as converged when the training loss improves by no more than this for "
        "--tol-epochs epochs (0: off; auto, for tables unless --epochs is given: "
        f"{AUTO_TOL['lbfgs']:g} for L-BFGS, {AUTO_TOL['otherwise']:g} otherwise)",
    ),
    (
        "--tol-epochs",
        {"type": int},
        "epochs in a row without such an improvement before stopping",
    ),
    (
        "--folds",
        {"type": int},
        "cross-validate first: K fits, each validated on one of K folds of the train and val "
        "rows (by class), metrics as mean and spread; the final model as the flags say (0: off)",
    ),
    (
        "--repeats",
        {"type": int},
        "fits of every fold (or of the split, without --folds), seeded --seed, --seed + 1, ...",
    ),
    ("--log-every", {"type": int}, "record and print losses every N epochs"),
    (
        "--eval-every",
        {"type": int},
        "also compute the test loss every N epochs, as the course does (0: when recording)",
    ),
    (
        "--checkpoint-every",
        {"type": int},
        "write a resume checkpoint every N epochs (0: every 30 seconds, and at the end)",
    ),
    ("--seed", {"type": int}, "random seed"),
    ("--device", {"choices": DEVICES}, "where to train"),
    (
        "--threads",
        {"type": int, "metavar": "N"},
        "CPU threads for torch (0: auto, the cores not busy with other work, as the load "
        "average shows)",
    ),
    ("--out", {"metavar": "DIR"}, "run folder (default: a new folder under runs/)"),
    ("--no-plots", {"action": "store_const", "const": False}, "skip the PNG pictures"),
    (
        "--no-reference",
        {"action": "store_const", "const": False},
        "skip the closed-form (or majority-class) reference",
    ),
    (
        "--class-weight",
        {"metavar": "WEIGHTS"},
        "classification: weigh the classes in the loss, balanced (rows / (classes x the "
        "class's rows)) or label=weight pairs such as yes=3,no=1 (default: none)",
    ),
    (
        "--threshold",
        {"type": _or_auto(float)},
        "binary: the probability of the second class above which a row is that class; auto: "
        "the one with the best --threshold-metric on --val",
    ),
    (
        "--threshold-metric",
        {"choices": THRESHOLD_METRICS},
        "what --threshold auto maximises on the validation split",
    ),
    (
        "--calibrate",
        {"action": "store_const", "const": True},
        "classification: scale the logits by one temperature fitted on --val, so that the "
        "class probabilities mean what they say (ECE and Brier score before and after)",
    ),
    (
        "--interval",
        {"type": float, "metavar": "LEVEL"},
        "regression: prediction intervals that hold the true value with this probability, "
        "such as 0.9 (split-conformal, fitted on --val; predict writes lower and upper) "
        "(default: off)",
    ),
    (
        "--tensorboard",
        {"action": "store_const", "const": True},
        "also log the losses for TensorBoard (needs torchwork[tensorboard])",
    ),
]
# ...each with the config field it sets (settings.SETTINGS: run's keywords are these flags)
RUN_FLAGS: list[tuple[str, str, dict[str, Any], str]] = [
    (flag, SETTINGS[setting_name(flag)], options, text) for flag, options, text in _RUN_FLAGS
]


def _default(field: str) -> Any:
    section, _, key = field.rpartition(".")
    value = getattr(getattr(RunConfig(), section) if section else RunConfig(), key)
    return ",".join(map(str, value)) if isinstance(value, list) else value


def _shown_default(field: str, options: dict[str, Any], text: str) -> str:
    """' (default: 300; tables: until converged, at most 500; images: 30)': the default for
    the line and, where a table run or a folder of some kind's files gets another
    (config.TABLE_DEFAULTS, FOLDER_DEFAULTS, RunConfig.layered), those too; nothing where
    the help text says it."""
    if "(default" in text:
        return ""
    others = []
    folders = [(registry.KINDS[k].noun, d) for k, d in FOLDER_DEFAULTS.items()]
    for kind, defaults in [("tables", TABLE_DEFAULTS), *folders]:
        other = (_TABLE_WORDS if kind == "tables" else _model_words(defaults)).get(field)
        if other is None and field in defaults and defaults[field] != _default(field):
            other = _plain(defaults[field])
        if options.get("action"):  # an on/off flag: off unless tables or images turn it on
            other = "on" if defaults.get(field) == options.get("const") else None
        if other is not None and (kind != "tables" or "tables" not in text):
            others.append(f"{kind}: {other}")
    if options.get("action"):
        return f" ({'; '.join(others)})" if others else ""
    line = _default(field)
    if line == "":
        return ""
    return f" (default: {'; '.join([_plain(line), *others])})"


# Table defaults that a plain value would misstate.
_TABLE_WORDS = {
    "train.epochs": f"until converged, at most {TABLE_DEFAULTS['train.epochs']}",
    "train.patience": f"auto with --val, {MLP_PATIENCE} for an mlp",
    "train.l2_c": "auto for a linear classifier",
    "data.train": f"{MLP_SPLIT[0]:g} for an mlp",
    "data.val": f"{MLP_SPLIT[1]:g} for an mlp",
}


def _plain(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _model_words(defaults: dict[str, Any]) -> dict[str, str]:
    """A folder's defaults that its model's own change (registry.MODELS' `defaults`: TinyVGG's
    constant rate): "cosine, tinyvgg none"."""
    words = {}
    for name, entry in registry.MODELS.items():
        for field, value in entry.defaults:
            if field in defaults and name in _folder_models(defaults):
                words[field] = (
                    f"{_plain(defaults[field])}, {name} {_plain(value) if value else 'off'}"
                )
    return words


def _folder_models(defaults: dict[str, Any]) -> list[str]:
    """The models that fit a folder whose default model is defaults["model.kind"]."""
    needs = registry.MODELS[defaults.get("model.kind", "linear")].needs
    return [name for name, entry in registry.MODELS.items() if needs and entry.needs == needs]


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
        metavar="PATH",
        help="rows from a table file (.csv .tsv .parquet .xlsx .npy), columns matched by name; "
        "for an image model, an image file or a folder of them",
    )
    predict.add_argument(
        "--out",
        metavar="FILE",
        help="write the rows with predictions to a .csv or .parquet file (default: print CSV)",
    )
    predict.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    predict.add_argument(
        "--skip-bad",
        action="store_true",
        help="images: leave out files that cannot be read, and name them (else they are an error)",
    )

    evaluate = commands.add_parser(
        "evaluate", help="metrics of a saved model on a labelled table or folder of images"
    )
    evaluate.add_argument(
        "--model",
        required=True,
        metavar="FILE",
        help="model file (.safetensors; .pth for the line)",
    )
    evaluate.add_argument(
        "--data",
        required=True,
        metavar="PATH",
        help="a labelled table; for an image model, class folders (or a train/ and test/ folder: its test/)",
    )
    evaluate.add_argument(
        "--target",
        metavar="COL",
        help="the target column's name in this file (default: the model's)",
    )
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out files that cannot be read, and name them (else they are an error)",
    )

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
    export.add_argument(
        "--force", action="store_true", help="overwrite the output file if it exists"
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
    serve.add_argument(
        "--max-pixels",
        type=int,
        default=SERVE_MAX_PIXELS,
        metavar="N",
        help=f"the largest picture taken, in pixels (default: {SERVE_MAX_PIXELS:,}, a "
        "24-megapixel photo; each of the server's threads holds one while it decodes it)",
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

    eject = commands.add_parser(
        "eject",
        help="write a run as one plain PyTorch script that reproduces it, bit for bit",
    )
    eject.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by torchwork run")
    eject.add_argument(
        "--out", default="train.py", metavar="FILE", help="the script (default: train.py)"
    )
    eject.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The effective config: defaults, then the --config file, then the flags given."""
    file = read_toml(args.config) if args.config else {}
    flags = {field: getattr(args, field) for _, field, _, _ in RUN_FLAGS if hasattr(args, field)}
    return RunConfig.layered(file, flags, source=args.config or "config")
