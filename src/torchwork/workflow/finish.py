"""Steps 4 to 6: evaluate (with the closed-form reference and the pictures), save the model
files and check that they load, and write the run folder."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from torchwork import __version__, distributed, registry
from torchwork.checkpoint import (
    load,
    save,
)
from torchwork.config import SPLITS, RunConfig
from torchwork.data import Prepared
from torchwork.engine import History
from torchwork.fileio import write_text_atomic
from torchwork.metrics import classification_metrics, regression_metrics
from torchwork.models import build_from_spec
from torchwork.predict import Score, outputs_of, prediction_columns, score, write_table
from torchwork.report.text import HEADINGS, NUMBER_WIDTH, format_metrics_table, format_table
from torchwork.runfolder import (
    CHECKPOINT_BEST,
    CHECKPOINT_LAST,
    CONFIG,
    METRICS,
    MODEL_CARD,
    MODEL_FILES,
    MODEL_PTH,
    PLOTS,
    PREDICTIONS,
    REPORT,
    SUMMARY,
    Summary,
    write_json,
)
from torchwork.solve import least_squares

if TYPE_CHECKING:
    from torchwork.workflow.session import Session


@dataclass
class Evaluation:
    """Step 4's results, for steps 5 and 6."""

    used: list[str]  # the splits that have rows
    outputs: dict[str, torch.Tensor]  # raw model outputs on each split
    scores: dict[str, Score]
    reference: dict[str, Any]  # what the reference scored on each split (empty when skipped)
    importance: dict[str, Any] | None = None  # tables: permutation importance on the test split
    coefficients: dict[str, Any] | None = None  # a linear model's, in the columns' own units
    interval: dict[str, Any] | None = None  # --interval: its level, half-width, test coverage
    calibration: dict[str, Any] | None = None  # --calibrate: the temperature, ECE, Brier
    threshold: dict[str, Any] | None = None  # --threshold: the value and how it was chosen
    explained: dict[str, Any] | None = None  # by column: what pushes the outputs (text: words)
    mistakes: list[dict[str, Any]] | None = None  # a classifier's mistakes, shown as read


def finish(
    session: Session,
    history: History,
    seconds: float,
    outputs_before: torch.Tensor,
    log: Callable[[str], None],
) -> Path:
    """Steps 4 to 6: evaluate and draw, save and check the model files, write the run folder."""
    if not session.main:
        return session.out
    evaluation = evaluate(session, history, outputs_before, log)
    saved_config = save_and_verify(session, evaluation, log)
    write_run_folder(session, history, seconds, evaluation, saved_config, log)
    return session.out


def evaluate(
    session: Session, history: History, outputs_before: torch.Tensor, log: Callable[[str], None]
) -> Evaluation:
    """Step 4: the metrics of every split beside the reference's, and the pictures."""
    config, data, model, out = session.config, session.data, session.model, session.out
    used = [name for name in SPLITS if session.sizes[name]]
    X = session.X
    outputs = {name: outputs_of(model, X[name]) for name in used}
    # The decision rule first (--calibrate, --threshold), so that every score is the model's
    # as saved; their lines are said after the metrics.
    notes: list[str] = []
    calibration = fit_calibration(session, outputs, notes.append)
    threshold = fit_threshold(session, outputs, notes.append)
    scores = {
        name: score(data.task, data.encoder, outputs[name], data.y_raw[name]) for name in used
    }
    reference, reference_summary = reference_scores(data, used, config.reference)
    log("4. Predictions and evaluation")
    if "skipped" in reference_summary:
        log(f"   No reference: {reference_summary['skipped']}")
    if data.true is not None:
        log_parameters(model, reference_summary, data.true, log)
    log(
        format_metrics_table(
            {name: scores[name].metrics for name in used},
            reference or None,
            "closed-form" if data.task == "regression" else "majority",
        )
    )
    for note in notes:
        log(note)
    interval = fit_interval(session, scores, log)
    importance, coefficients = inputs_that_matter(session, reference_summary, log)
    explained = explain(session, log)
    mistakes = mistakes_of(session, outputs.get("test"), log)
    if config.plots:
        draw_plots(
            out / PLOTS, data, history, outputs_before, outputs.get("test"), scores.get("test")
        )
        if calibration is not None:
            from torchwork.plots import plot_reliability

            plot_reliability(calibration, path=out / PLOTS / "reliability.png")
        if importance is not None:
            from torchwork.plots import plot_importance

            plot_importance(importance, coefficients, path=out / PLOTS / "importance.png")
        for column, part in (explained or {}).items():
            from torchwork.plots import plot_explained

            plot_explained(part, path=out / PLOTS / pushes_picture(column))
    return Evaluation(
        used,
        outputs,
        scores,
        reference_summary,
        importance,
        coefficients,
        interval,
        calibration,
        threshold,
        explained,
        mistakes,
    )


def explain(session: Session, log: Callable[[str], None]) -> dict[str, Any] | None:
    """What each block says pushes the model's outputs (a text column's words), measured on
    the test rows, by column; said in a line or two each."""
    data = session.data
    blocks = getattr(data.encoder, "blocks", None)
    if blocks is None or not len(data.X["test"]):
        return None
    found = {}
    for k, block in enumerate(blocks):
        part = block.explain(session.model, session.X["test"], k, data.encoder)
        if part:
            found[block.columns[0]] = part
            log(f"   Column '{block.columns[0]}': {push_words(part)}")
    return found or None


def push_words(part: dict[str, Any], groups: int = 4, items: int = 5) -> str:
    """An explanation in a line: "the words ... most: pos: great, love, ...; neg: ..."."""
    named = list(part["groups"].items())
    more = f"; and {len(named) - groups} more" if len(named) > groups else ""
    shown = "; ".join(
        f"{label}: {', '.join(str(g) for g, _ in top[:items]) or '-'}"
        for label, top in named[:groups]
    )
    return f"{part['title']}: {shown}{more}"


def pushes_picture(column: str) -> str:
    """The picture of a column's pushes, in plots/."""
    from torchwork.kinds.base import graph_name

    return f"{graph_name('pushes', column) if column != 'file' else 'pushes_file'}.png"


MISTAKES = 10  # the model's mistakes shown, from the first data.EXAMPLES test rows


def mistakes_of(
    session: Session, outputs: torch.Tensor | None, log: Callable[[str], None]
) -> list[dict[str, Any]] | None:
    """A classifier's mistakes among the first test rows, with their columns as a person
    reads them (a text's start), the true and predicted labels and the probability given
    to the prediction; None when there is nothing to show them with."""
    data = session.data
    if outputs is None or data.task == "regression" or not data.examples:
        return None
    shown = len(next(iter(data.examples.values())))
    decoded = data.encoder.decode(outputs[:shown])
    truth = data.y_raw["test"][:shown]
    wrong = torch.nonzero(decoded["index"] != truth).reshape(-1).tolist()
    found = [
        {
            "columns": {name: values[i] for name, values in data.examples.items()},
            "true": data.labels[int(truth[i])],
            "predicted": data.labels[int(decoded["index"][i])],
            "probability": round(float(decoded["probabilities"][i, decoded["index"][i]]), 4),
        }
        for i in wrong[:MISTAKES]
    ]
    if found:
        first = found[0]
        text = next(iter(first["columns"].values()))[:80]
        log(
            f"   Mistakes: {len(wrong)} of the first {shown} test rows, such as {text!r} "
            f"({first['true']}, predicted {first['predicted']} at {first['probability']:.2f})"
        )
    return found


def fit_threshold(
    session: Session, outputs: dict[str, torch.Tensor], log: Callable[[str], None]
) -> dict[str, Any] | None:
    """--threshold: a binary model's decision threshold, given or chosen on the validation
    split (--threshold auto, for --threshold-metric), stored in the encoder."""
    config, data = session.config, session.data
    if config.threshold == 0.5:
        return None
    if config.threshold == "auto":
        from torchwork.decision import choose_threshold

        probabilities = data.encoder.decode(outputs["val"])["probabilities"]
        value, best = choose_threshold(probabilities, data.y_raw["val"], config.threshold_metric)
        result = {
            "value": value,
            "chosen_by": f"the best validation {config.threshold_metric}",
            "metric": config.threshold_metric,
            "val_metric": best,
        }
        log(
            f"   Threshold: {value:g} (the best validation {config.threshold_metric} of 0.01 to "
            f"0.99: {best:.4f}); rows at that probability of '{data.labels[1]}' or more are "
            f"'{data.labels[1]}'"
        )
    else:
        value = float(config.threshold)
        result = {"value": value, "chosen_by": "--threshold"}
        log(f"   Threshold: {value:g} (--threshold) for '{data.labels[1]}'")
    data.encoder.threshold = value
    return result


def fit_calibration(
    session: Session, outputs: dict[str, torch.Tensor], log: Callable[[str], None]
) -> dict[str, Any] | None:
    """--calibrate: the temperature fitted on the validation split, stored in the encoder
    (so the model file, predict, serve and exports apply it), with the expected calibration
    error and Brier score of every split before and after, and the test split's (else the
    validation split's) reliability table."""
    if not session.config.calibrate:
        return None
    from torchwork.calibration import calibration_scores, calibration_warnings, fit_temperature

    data, task = session.data, session.data.task
    temperature = fit_temperature(outputs["val"], data.y_raw["val"], task)
    data.encoder.temperature = temperature
    assessed = {
        name: calibration_scores(outputs[name], data.y_raw[name], task, temperature)
        for name in outputs
    }
    splits = {name: scores for name, (scores, _) in assessed.items()}
    shown = "test" if "test" in outputs else "val"
    scores, diagram = assessed[shown]
    log(
        f"   Calibration: temperature {temperature:.4g} (fitted on the {session.sizes['val']} "
        f"validation rows); {shown} ECE {scores['ece_before']:.4f} -> {scores['ece_after']:.4f}, "
        f"Brier {scores['brier_before']:.4f} -> {scores['brier_after']:.4f}"
    )
    warnings = calibration_warnings(splits, session.sizes["val"])
    for warning in warnings:
        log(f"   Warning: {warning}")
    return {
        "temperature": temperature,
        "fitted_on": "val",
        "val_rows": session.sizes["val"],
        "splits": splits,
        "reliability": {"split": shown} | diagram,
        "warnings": warnings,
    }


def fit_interval(
    session: Session, scores: dict[str, Score], log: Callable[[str], None]
) -> dict[str, Any] | None:
    """--interval: the split-conformal half-width on the validation split, stored in the
    encoder (so the model file, predict, serve and exports carry it), and its coverage of
    the test split."""
    level, data = session.config.interval, session.data
    if not level:
        return None
    from torchwork.intervals import coverage, half_width

    width = half_width(scores["val"].predictions, data.y_raw["val"], level)
    data.encoder.interval = [level, width]
    result = {
        "level": level,
        "half_width": width,
        "fitted_on": "val",
        "val_rows": session.sizes["val"],
    }
    if "test" in scores:
        result["test_coverage"] = coverage(scores["test"].predictions, data.y_raw["test"], width)
    covered = (
        f"; {result['test_coverage']:.1%} of the {session.sizes['test']} test rows inside"
        if "test_coverage" in result
        else ""
    )
    log(
        f"   Interval: prediction ± {width:.6g} for {level:.0%} coverage (split-conformal, "
        f"fitted on the {session.sizes['val']} validation rows){covered}"
    )
    return result


def inputs_that_matter(
    session: Session, reference: dict[str, Any], log: Callable[[str], None]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """A table model's permutation importance on the test split, and a linear model's
    coefficients in the columns' own units beside the closed-form ones (importance.py)."""
    data, model = session.data, session.model
    if getattr(data.encoder, "blocks", None) is None or not len(data.X["test"]) or data.folder:
        return None, None  # a folder's one column: shuffling it says only what the score does
    from torchwork.importance import permutation_importance, raw_coefficients

    importance = permutation_importance(
        model,
        session.X["test"],  # on the model's device
        data.y_raw["test"],
        data.task,
        data.encoder,
        session.config.train.seed,
    )
    top = ", ".join(f"{c['column']} {c['mean']:.4f}" for c in importance["columns"][:5])
    metric = HEADINGS.get(importance["metric"], importance["metric"])
    more = f" (of {len(importance['columns'])})" if len(importance["columns"]) > 5 else ""
    log(f"   Importance, the drop in test {metric} with a column shuffled: {top}{more}")
    coefficients = None
    if session.config.model.kind == "linear":
        scaled = data.task == "regression" and data.encoder.scale_target
        weight, bias = model.input_weights(), model.first_layer.bias
        coefficients = {"learned": raw_coefficients(weight, bias, data.encoder, scaled)}
        if "weight" in reference:
            exact = torch.tensor(reference["weight"]).reshape(1, -1)
            coefficients["closed_form"] = raw_coefficients(
                exact, torch.tensor(reference["bias"]), data.encoder, target_scaled=False
            )
    return importance, coefficients


def save_and_verify(
    session: Session, evaluation: Evaluation, log: Callable[[str], None]
) -> dict[str, Any]:
    """Step 5: save each model file, load it into a new model and check that it predicts
    exactly what the trained one does; returns the config the files hold."""
    config, data, model, out = session.config, session.data, session.model, session.out
    saved_config = config.to_dict() | {"out": ""}
    preprocess = data.encoder.to_dict() if data.encoder is not None else None
    check_rows = "test" if session.sizes["test"] else "train"
    expected = evaluation.outputs[check_rows]
    for name in MODEL_FILES:
        save(model, out / name, config=saved_config, preprocess=preprocess)
        # A .pth holds the weights alone: a table's model is loaded into one built from
        # its description, as the course loads a state_dict into a new model.
        template = (
            build_from_spec(model.spec())
            if data.encoder is not None and name == MODEL_PTH
            else None
        )
        loaded = load(out / name, template).to(session.device)
        if not torch.equal(outputs_of(loaded, session.X[check_rows]), expected):
            raise RuntimeError(
                f"the model loaded from {out / name} predicts differently from the trained one"
            )
    log(
        f"5. Saved model.safetensors and model.pth; loaded each into a new model: predictions on the "
        f"{session.sizes[check_rows]} {check_rows} rows identical to the trained model's"
    )
    return saved_config


def write_run_folder(
    session: Session,
    history: History,
    seconds: float,
    evaluation: Evaluation,
    saved_config: dict[str, Any],
    log: Callable[[str], None],
) -> None:
    """Step 6: metrics.csv, config.toml, predictions.csv, summary.json and report.html."""
    config, data, out = session.config, session.data, session.out
    write_text_atomic(out / METRICS, history.to_csv())
    write_text_atomic(out / CONFIG, RunConfig.from_dict(saved_config).to_toml())
    written = [CONFIG, METRICS, SUMMARY, *MODEL_FILES, CHECKPOINT_LAST]
    if (out / CHECKPOINT_BEST).exists():
        written.append(CHECKPOINT_BEST)
    if data.encoder is not None:
        write_predictions(out / PREDICTIONS, data, evaluation.outputs)
        written.append(PREDICTIONS)
    write_json(out / SUMMARY, summary_of(session, history, seconds, evaluation))
    from torchwork.report.card import write_model_card
    from torchwork.report.html import write_report

    write_report(out)
    write_model_card(out)
    written += [REPORT, MODEL_CARD]
    log(f"6. Run folder: {out} ({', '.join(written)}{f', {PLOTS}/' if config.plots else ''})")


def summary_of(
    session: Session, history: History, seconds: float, evaluation: Evaluation
) -> Summary:
    """summary.json: what the run did and scored (its keys: runfolder.Summary)."""
    config, data, model = session.config, session.data, session.model
    used, scores = evaluation.used, evaluation.scores
    summary: Summary = {
        "task": data.task,
        "loss": type(session.loss_fn).__name__,  # what --loss auto chose, too
        "metrics": {name: scores[name].metrics for name in used},
        "reference": evaluation.reference,
        "learned": learned_values(model),
        "rows": {name: session.sizes[name] for name in used},
        "epochs_run": history.epochs_run,
        "stopped_early": history.stopped_early,
        "converged": history.converged,
        "best_epoch": history.best_epoch,
        "training": {
            name: getattr(config.train, name)
            for name in ("optimizer", "lr", "batch_size", "epochs", "tol", "tol_epochs")
        }
        | {"chosen": session.chosen or {}}
        | ({"resumed": session.resumed} if session.resumed else {}),
        "seconds": seconds,
        "device": str(session.device),
        "seed": config.train.seed,
        "versions": versions(),
        # eject refuses a run of several processes: its script trains in one
        "reproducibility": reproducibility()
        | {"processes": session.group.world if session.group is not None else 1},
    }
    if distributed.typed_command():
        summary["command"] = distributed.typed_command()
    optional = {
        "cross_validation": session.cross_validation,
        "importance": evaluation.importance,
        "coefficients": evaluation.coefficients,
        "interval": evaluation.interval,
        "calibration": evaluation.calibration,
        "threshold": evaluation.threshold,
        "explained": evaluation.explained,
        "mistakes": evaluation.mistakes,
    }
    present = {key: value for key, value in optional.items() if value is not None}
    summary.update(present)  # type: ignore[typeddict-item]
    weights = getattr(session.loss_fn, "weight", None)  # CrossEntropyLoss(weight=...)
    weights = getattr(session.loss_fn, "weights", weights)  # decision.WeightedBCEWithLogitsLoss
    if weights is not None:
        summary["class_weights"] = dict(zip(map(str, data.labels), weights.tolist(), strict=True))
    if data.true is not None:
        summary["true"] = data.true
    if data.task != "regression":
        summary["labels"] = data.labels
        summary["confusion_matrix"] = {name: scores[name].confusion_matrix for name in used}
    if data.encoder is not None:
        encoder = data.encoder
        summary["data"] = {
            "path": config.data.path,
            "sha256": session.data_sha256 or "",
            "table_rows": data.source_rows,  # the rows of predictions.csv
            "target": encoder.target,
            "features": encoder.feature_names,
            # the model's first layer's inputs in order (one per category): a linear
            # model's weights are named by them
            "inputs": encoder.input_names,
            "columns": [
                {
                    "kind": b.kind,
                    "columns": b.columns,
                    "about": b.describe(),
                    "input": b.describe_input(),  # what predict and serve take for it
                    "untested": b.untested(),
                }
                for b in encoder.blocks
            ],
        }
        if data.dropped:  # --dropna: {"rows", "of", "columns": {column: empty cells}}
            summary["data"]["dropped"] = data.dropped
        if data.missing:  # the empty cells kept, by column
            summary["data"]["missing"] = data.missing
        if data.folder:  # a folder of class folders: what its files are
            from torchwork import registry

            summary["data"]["folder"] = registry.KINDS[encoder.blocks[0].kind].noun
    return summary


def versions() -> dict[str, str]:
    """The versions that decide a run's numbers: torchwork, torch, Python and the libraries
    that read the data."""
    import platform
    from importlib import metadata

    found = {"torchwork": __version__, "torch": torch.__version__}
    for package in ("numpy", "pyarrow", "safetensors", "pillow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found | {"python": platform.python_version(), "platform": platform.platform()}


def reproducibility() -> dict[str, Any]:
    """torch's settings that decide whether the same config and seed give the same bits."""
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


LEARNED_MAX = 20_000  # numbers summary.json lists one by one; a CNN's are in its model file


def learned_values(model: nn.Module) -> dict[str, list[float]]:
    """Every tensor's values, flattened, for a model of up to LEARNED_MAX numbers; nothing
    for a larger one (an image model's tens of thousands: 2 MB of JSON that no reader
    needs, since the model file holds them)."""
    state = model.state_dict()
    if sum(v.numel() for v in state.values()) > LEARNED_MAX:
        return {}
    return {k: v.detach().cpu().reshape(-1).tolist() for k, v in state.items()}


def inputs_sha256(data: Prepared) -> str:
    """The fingerprint of data that names files (a folder, a table's column of pictures):
    what the run learns from, split by split: the encoded inputs (the files' decoded
    contents among them), the target and a folder's file names."""
    import hashlib

    digest = hashlib.sha256()
    for name in SPLITS:
        for tensor in data.X[name].tensors:
            for part in tensor.parts() if hasattr(tensor, "parts") else (tensor,):
                digest.update(part.contiguous().numpy().tobytes())
        digest.update(data.y_raw[name].numpy().tobytes())
        if data.files is not None:
            digest.update("\n".join(data.files[i] for i in data.rows[name].tolist()).encode())
    return digest.hexdigest()


REFERENCE_MAX_INPUTS = 2048  # closed-form reference only up to this many model inputs...
REFERENCE_MAX_WORK = 2e11  # ...and rows x inputs² (its time; about 10 s on 2 cores here)


def reference_scores(
    data: Prepared, used: list[str], enabled: bool = True
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """The yardstick: closed-form least squares for regression, the majority class otherwise.

    Skipped when not `enabled` (--no-reference), and the closed form when it would cost
    more than training could (bounded time: rows x inputs²; memory: inputs²).
    """
    if not enabled:
        return {}, {"skipped": "--no-reference"}
    rows = len(data.X["train"])
    width = data.X["train"][0].numel() if isinstance(data.X["train"], torch.Tensor) else 0
    blocks = getattr(data.encoder, "blocks", None)
    if blocks is not None:
        width = len(data.encoder.input_names)
    if data.task == "regression" and (
        width > REFERENCE_MAX_INPUTS or rows * width * width > REFERENCE_MAX_WORK
    ):
        return {}, {
            "skipped": f"closed-form least squares on {rows:,} rows x {width:,} inputs would take "
            f"too long (at most {REFERENCE_MAX_INPUTS:,} inputs and {REFERENCE_MAX_WORK:.0e} "
            "rows x inputs²); fewer inputs (--max-categories, --exclude) bring it back"
        }
    if data.task == "regression":
        design = {name: linear_design(data, data.X[name]) for name in ("train", *used)}
        if design["train"] is None:
            return {}, {
                "skipped": "closed-form least squares needs columns of numbers and categories "
                "alone: this table has columns a linear model of its values cannot take"
            }
        exact = least_squares(design["train"], data.y_raw["train"])
        metrics = {
            name: regression_metrics(exact.predict(design[name]), data.y_raw[name]) for name in used
        }
        return metrics, {
            "method": "closed-form least squares on the training split (normal equations of "
            "the centred columns in float64, torch.linalg.lstsq)",
            "weight": exact.weight.reshape(-1).tolist(),
            "bias": exact.bias.reshape(-1).tolist(),
            "metrics": metrics,
        }
    classes = len(data.labels)
    train = data.y_raw["train"]
    majority = int(torch.bincount(train, minlength=classes).argmax())
    share = float((train == majority).double().mean())
    metrics = {}
    for name in used:
        truth = data.y_raw[name]
        guess = torch.full_like(truth, majority)
        metrics[name] = classification_metrics(
            guess, truth, classes, torch.full((len(truth),), share) if classes == 2 else None
        )
    return metrics, {
        "method": "majority class of the training split",
        "label": data.labels[majority],
        "metrics": metrics,
    }


def linear_design(data: Prepared, X: Any) -> torch.Tensor | None:
    """A split's inputs as a linear model of their values takes them (numbers, one-hot
    categories): what the closed form is solved on; None when a block has no such form."""
    blocks = getattr(data.encoder, "blocks", None)
    if blocks is None:
        return X
    parts = [block.linear_inputs(x) for block, x in zip(blocks, X.tensors, strict=True)]
    if any(p is None for p in parts):
        return None
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def log_parameters(
    model: nn.Module, reference: dict[str, Any], true: dict[str, float], log: Callable[[str], None]
) -> None:
    """The learned line next to the exact answer and the truth."""
    line = learned_line(model)
    learned = [f"{v:.4f}" for v in line] if line is not None else ["(mlp)", "(mlp)"]
    rows = [["", "learned", "closed-form", "true"]]
    for i, name in enumerate(("weight", "bias")):
        exact = f"{reference[name][0]:.4f}" if name in reference else "n/a"
        rows.append([name, learned[i], exact, f"{true[name]:.4f}"])
    log(format_table(rows, left=1, minimum=NUMBER_WIDTH))


def draw_plots(
    folder: Path,
    data: Prepared,
    history: Any,
    outputs_before: torch.Tensor,
    outputs_test: torch.Tensor | None,
    test_score: Score | None,
) -> None:
    # matplotlib costs most of a second to import: only runs that draw pay for it.
    from torchwork.plots import (
        plot_confusion_matrix,
        plot_loss_curves,
        plot_predicted_vs_actual,
        plot_predictions,
        plot_residuals,
    )

    folder.mkdir(exist_ok=True)
    plot_loss_curves(
        history.column("epoch"),
        history.column("train_loss"),
        history.column("test_loss"),
        history.column("val_loss"),
        path=folder / "loss_curves.png",
    )
    if outputs_test is None or test_score is None:
        return
    if data.task != "regression":
        plot_confusion_matrix(
            test_score.confusion_matrix, data.labels, path=folder / "confusion_matrix.png"
        )
        decoded = data.encoder.decode(outputs_test)
        for block, x in zip(data.encoder.blocks, data.X["test"].tensors, strict=True):
            block.draw(folder, x, data.y_raw["test"], decoded, data.labels)
        return
    predictions = test_score.predictions
    y_test = data.y_raw["test"]
    if data.x_plot is not None:
        before = (
            data.encoder.decode(outputs_before)["prediction"]
            if data.encoder is not None
            else outputs_before
        )
        x_train, y_train = data.x_plot["train"], data.y_raw["train"]
        x_test = data.x_plot["test"]
        plot_predictions(
            x_train,
            y_train,
            x_test,
            y_test,
            before,
            path=folder / "predictions_before.png",
            title="Predictions before training",
        )
        plot_predictions(
            x_train,
            y_train,
            x_test,
            y_test,
            predictions,
            path=folder / "predictions_after.png",
            title="Predictions after training",
        )
    else:
        plot_predicted_vs_actual(y_test, predictions, path=folder / "predicted_vs_actual.png")
        plot_residuals(y_test, predictions, path=folder / "residuals.png")


def write_predictions(path: Path, data: Prepared, outputs: dict[str, torch.Tensor]) -> None:
    """predictions.csv: every row of the table in order, its split, target and prediction
    (empty for rows left out when the split fractions add up to less than 1)."""
    import numpy as np
    import pyarrow as pa

    from torchwork.tables import arrow

    used = [name for name in SPLITS if name in outputs]
    order = torch.cat([data.rows[name] for name in used]).numpy()
    where = np.full(data.source_rows, -1, dtype=np.int64)  # table row -> position in order
    where[order] = np.arange(len(order))
    split = np.full(data.source_rows, len(SPLITS), dtype=np.int8)
    for code, name in enumerate(SPLITS):
        split[data.rows[name].numpy()] = code
    predicted = prediction_columns(data.encoder, torch.cat([outputs[name] for name in used]))
    place = arrow.from_numpy(where, mask=where < 0)
    target = data.encoder.target
    if target == "split" or target in predicted:
        target = f"{target} (actual)"  # keep the target beside our own column of that name
    columns = {"file": pa.array(data.files)} if data.files is not None else {}
    columns |= {
        "split": arrow.labelled(split, [*SPLITS, "unused"]),
        target: data.target,
    }
    columns |= {name: arrow.compute("take", column, place) for name, column in predicted.items()}
    write_table(pa.table(columns), path)


def learned_line(model: nn.Module) -> tuple[float, float] | None:
    """(weight, bias) of a one-feature linear model, else None."""
    state = model.state_dict()
    if len(state) != 2:  # a line is a weight and a bias
        return None
    return registry.learned_line({k: v.reshape(-1).tolist() for k, v in state.items()})


def describe_parameters(model: nn.Module) -> str:
    """Small parameters by value (the course prints its state_dict), large ones by count."""
    state = model.state_dict()
    if all(v.numel() <= 4 for v in state.values()):
        return ", ".join(
            f"{k} " + " ".join(f"{x:.4f}" for x in v.reshape(-1).tolist()) for k, v in state.items()
        )
    total = sum(v.numel() for v in state.values())
    return f"{total} parameters in {len(state)} tensors"
