"""The commands: each parses nothing and trains nothing itself; it calls the library and
prints. torch is imported only inside the commands that need it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torchwork.cli.parser import RUN_FLAGS, config_from_args
from torchwork.config import (
    RunConfig,
)
from torchwork.errors import ConfigError, DataError, ModelFileError, RunFolderError

if TYPE_CHECKING:
    from torchwork.kinds.encoder import Encoder


def cmd_run(args: argparse.Namespace) -> int:
    from torchwork import machine

    machine.watch()  # how busy the cores are while torch imports: --threads auto
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
            if config.train.folds or config.train.repeats > 1:
                raise ConfigError("--folds and --repeats run in one process: drop --nproc")
            if config.train.class_weight:
                raise ConfigError("--class-weight runs in one process: drop --nproc")
            if isinstance(config.train.batch_size, int):
                from torchwork.distributed import check_batch

                check_batch(config.train.batch_size, args.nproc)
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
        from torchwork.workflow.checkpoints import check_resume_fields
        from torchwork.workflow.run import resume

        check_resume_fields({field: flag for flag, field, _, _ in RUN_FLAGS if field in flags})
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
    from torchwork.workflow.run import run

    run(config, force=args.force)
    return 0


def _check_resume_folder(folder: str) -> None:
    """--resume names a run folder: a file or a folder no run wrote is said as such (a run
    folder without a checkpoint is workflow.run.resume's to explain)."""
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


def _check_row_width(rows: list[list[float]], width: int, encoder: Encoder | None) -> None:
    """--x rows as wide as the model's inputs; else say how to write one row."""
    given = len(rows[0])
    if given == width:
        return
    from torchwork.errors import few

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
        refuse_overwrite,
        with_predictions,
        write_table,
    )

    if args.out is not None:
        out = check_out_name(args.out)
        if out.is_dir():
            raise ConfigError(f"--out {out} is a folder: give a .csv or .parquet file name")
        refuse_overwrite(out, args.force)
    if args.data:
        predict_file(args.model, args.data, args.out, skip_bad=args.skip_bad)
        if args.out:
            print(f"Wrote predictions for {args.data} to {args.out}", file=sys.stderr)
        return 0
    import pyarrow as pa

    predictor = Predictor.from_file(args.model)
    if predictor.file_block is not None:
        from torchwork import registry

        noun = registry.KINDS[predictor.file_block.kind].noun
        raise DataError(
            f"{args.model} learned from {noun}: give a file or a folder of them with --input"
        )
    from torchwork.kinds.base import Source

    rows = _parse_rows(args.x)
    encoder = predictor.encoder
    names = predictor.feature_names
    _check_row_width(rows, len(names), encoder)
    where = Source("--x")
    try:  # each column as its kind takes it from numbers
        table = pa.table(
            {n: predictor.from_json(n, [r[j] for r in rows], where) for j, n in enumerate(names)}
        )
    except DataError as e:
        raise DataError(f"{e}; give rows of such columns in a file with --data FILE") from None
    _, X = predictor.encode(table, where, fix="give finite numbers")
    outputs = predictor.outputs(X)
    write_table(with_predictions(table, encoder, outputs), args.out)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from torchwork.predict import evaluate_file
    from torchwork.report.text import format_metrics_table, format_table

    result = evaluate_file(args.model, args.data, args.target or "", skip_bad=args.skip_bad)
    if args.json:
        from torchwork.runfolder import _finite

        print(json.dumps(_finite(result), indent=2))
        return 0
    if result["of"] != "rows":
        print(f"{result['task']} on {result['rows']} {result['of']} of {args.data}")
    else:
        print(
            f"{result['task']} on {result['rows']} rows of {args.data} (target '{result['target']}')"
        )
    print(format_metrics_table({"data": result["metrics"]}))
    if "confusion_matrix" in result:
        labels = [str(v) for v in result["labels"]]
        rows = [["", *labels]]
        rows += [
            [label, *(f"{n:,}" for n in row)]
            for label, row in zip(labels, result["confusion_matrix"], strict=True)
        ]
        print("Confusion matrix (rows: actual, columns: predicted)")
        print(format_table(rows, left=1, minimum=6))
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
    from torchwork.errors import few

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

    export_model(args.model, args.format, args.out, force=args.force)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from functools import partial

    from torchwork.serve.server import serve

    # flush: the address line must show at once when the output is a pipe
    serve(
        args.model,
        args.host,
        args.port,
        log=partial(print, flush=True),
        max_pixels=args.max_pixels,
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from torchwork.report.compare import compare_runs

    print(compare_runs(args.runs, out_png=args.out, out_html=args.html))
    return 0


def cmd_eject(args: argparse.Namespace) -> int:
    from torchwork.eject import eject

    left_out: list[str] = []
    out = eject(args.run_dir, args.out, force=args.force, say=left_out.append)
    print(
        f"Wrote {out}: the run {args.run_dir} as plain PyTorch. `python {out}` trains it again "
        "and writes model.pth and metrics.csv, equal to the run's"
    )
    for line in left_out:  # after what was written: what the script does not do
        print(line, file=sys.stderr)
    return 0


COMMANDS = {
    "run": cmd_run,
    "predict": cmd_predict,
    "evaluate": cmd_evaluate,
    "inspect": cmd_inspect,
    "export": cmd_export,
    "serve": cmd_serve,
    "compare": cmd_compare,
    "eject": cmd_eject,
}
