"""Step 6, all together: the six steps in order. `torchwork run` calls `run(config)`;
`torchwork predict` and `evaluate` call `predict_file` and `evaluate_file`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchwork import __version__
from torchwork.checkpoint import load, read_metadata, save
from torchwork.config import RunConfig
from torchwork.data import make_line, split_indices
from torchwork.engine import fit, make_loss, make_optimizer
from torchwork.errors import TorchworkError
from torchwork.fileio import atomic_path, write_text_atomic
from torchwork.metrics import classification_metrics, confusion_matrix, regression_metrics
from torchwork.models import build_model
from torchwork.plots import (
    plot_confusion_matrix,
    plot_loss_curves,
    plot_predicted_vs_actual,
    plot_predictions,
    plot_residuals,
)
from torchwork.report import create_run_dir, format_metrics_table, resolve_run_dir, write_json
from torchwork.solve import least_squares

SPLITS = ("train", "val", "test")


def resolve_device(name: str) -> torch.device:
    """auto picks CUDA when available, else the CPU; a named device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TorchworkError(
            "--device cuda: no CUDA GPU is available here: use --device cpu or auto"
        )
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise TorchworkError(
            "--device mps: Apple's MPS is not available here: use --device cpu or auto"
        )
    return torch.device(name)


@dataclass
class Prepared:
    """Step 1's result: every row encoded, and which rows belong to which split."""

    X: torch.Tensor  # model inputs, all rows
    y: torch.Tensor  # the target as the loss function wants it, all rows
    y_raw: torch.Tensor  # regression: the target in its own units [rows, 1]; else class indices
    rows: dict[str, torch.Tensor]  # split name -> row numbers
    task: str  # regression, binary or multiclass
    description: str
    encoder: Any = None  # TableEncoder for tables, None for the line
    table: Any = None  # the pyarrow table the rows came from
    x_plot: torch.Tensor | None = None  # the one raw feature for the course's picture
    true: dict[str, float] | None = None  # the line's known parameters

    def part(self, tensor: torch.Tensor, name: str) -> torch.Tensor:
        return tensor[self.rows[name]]

    @property
    def labels(self) -> list[Any]:
        return self.encoder.labels if self.encoder is not None else []


def prepare_data(config: RunConfig, log: Callable[[str], None] = print) -> Prepared:
    """Step 1: the line with known parameters, or the user's table, split and encoded."""
    d, seed = config.data, config.train.seed
    if not d.path:
        X, y = make_line(d.weight, d.bias, d.start, d.end, d.step, d.noise, seed=seed)
        train, val, test = split_indices(len(X), d.train, d.val, d.test, d.shuffle, seed)
        noise = f" + noise (std {d.noise:g})" if d.noise else ""
        return Prepared(
            X,
            y,
            y,
            {"train": train, "val": val, "test": test},
            "regression",
            f"y = {d.weight:g} * X + {d.bias:g}{noise}, {len(X)} rows",
            x_plot=X,
            true={"weight": d.weight, "bias": d.bias},
        )

    from torchwork.tables import TableEncoder, check_values, detect_task, read_table, select_columns

    source = d.path
    table = read_table(source)
    target, features = select_columns(table, d.target, d.features, source)
    table = check_values(table, [*features, target], source, dropna=d.dropna, log=log)
    task, why = detect_task(table.column(target), d.task, target, source)
    try:
        train, val, test = split_indices(table.num_rows, d.train, d.val, d.test, d.shuffle, seed)
    except TorchworkError as e:
        raise TorchworkError(
            f"{source} has {table.num_rows} rows, too few for the split: {e}"
        ) from None
    encoder = TableEncoder.fit(
        table,
        features,
        target,
        task,
        train.numpy(),
        source,
        categorical=d.categorical,
        scale=d.scale,
        scale_target=d.scale_target and task == "regression",
    )
    X = encoder.transform(table, source)
    y = encoder.encode_target(table, source)
    y_raw = encoder.target_values(table) if task == "regression" else y.reshape(-1).long()
    if task != "regression" and len(torch.unique(y_raw[train])) < 2:
        raise TorchworkError(
            f"the training rows of {source} hold only one class of '{target}': add rows or use --shuffle"
        )
    one_numeric = len(encoder.features) == 1 and encoder.features[0].kind == "numeric"
    text_columns = [f for f in encoder.features if f.kind == "categorical"]
    encoded = (
        f" ({len(text_columns)} text column(s) one-hot encoded into {sum(len(f.categories) for f in text_columns)})"
        if text_columns
        else ""
    )
    description = (
        f"{source}, {table.num_rows} rows x {len(features)} features{encoded}, target '{target}'\n"
        f"   Task: {task} ({why}; --task to change)"
    )
    from torchwork.tables import table_to_tensor

    x_plot = table_to_tensor(table, features) if one_numeric else None
    return Prepared(
        X,
        y,
        y_raw,
        {"train": train, "val": val, "test": test},
        task,
        description,
        encoder=encoder,
        table=table,
        x_plot=x_plot,
    )


def run(config: RunConfig, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Run the whole workflow and return the run folder.

    >>> folder = run(RunConfig(out="runs/demo"))  # doctest: +SKIP
    """
    config.validate()
    d, m, t = config.data, config.model, config.train
    out = resolve_run_dir(config.out, force)
    device = resolve_device(t.device)
    log(f"torchwork {__version__} | torch {torch.__version__} | device {device} | seed {t.seed}")

    # 1. Data
    data = prepare_data(config, log)
    sizes = {name: len(rows) for name, rows in data.rows.items()}
    shown = " / ".join(f"{n} {name}" for name, n in sizes.items() if n or name != "val")
    log(f"1. Data: {data.description}")
    log(f"   Split: {shown}{' (shuffled)' if d.shuffle else ''}")

    # 2. Model, loss function, optimizer
    loss_fn = make_loss(t.loss, data.task)
    out_features = data.encoder.out_features if data.encoder is not None else 1
    torch.manual_seed(t.seed)
    model = build_model(
        m.kind, in_features=data.X.shape[1], out_features=out_features, hidden=m.hidden
    )
    log(
        f"2. Model: {type(model).__name__} ({m.kind}); loss {type(loss_fn).__name__}; optimizer {t.optimizer} (lr {t.lr:g})"
    )
    log(f"   Initial parameters: {describe_parameters(model)}")

    out = create_run_dir(out)
    model.to(device)
    X = {name: data.part(data.X, name).to(device) for name in SPLITS}
    y = {name: data.part(data.y, name).to(device) for name in SPLITS}
    optimizer = make_optimizer(t.optimizer, model.parameters(), lr=t.lr, momentum=t.momentum)
    outputs_before = outputs_of(model, X["test"])

    # 3. Training
    log(
        f"3. Training for {t.epochs} epochs ({'full batch' if t.batch_size == 0 else f'batches of {t.batch_size}'})"
    )
    started = time.perf_counter()
    history = fit(
        model,
        X["train"],
        y["train"],
        X["test"],
        y["test"],
        loss_fn,
        optimizer,
        t.epochs,
        X_val=X["val"],
        y_val=y["val"],
        batch_size=t.batch_size,
        patience=t.patience,
        log_every=t.log_every,
        seed=t.seed,
        log=log,
        progress=sys.stderr.isatty(),
    )
    seconds = time.perf_counter() - started
    write_text_atomic(out / "metrics.csv", history.to_csv())

    # 4. Predictions and evaluation
    used = [name for name in SPLITS if sizes[name]]
    outputs = {name: outputs_of(model, X[name]) for name in used}
    scores = {
        name: score(data.task, data.encoder, outputs[name], data.part(data.y_raw, name))
        for name in used
    }
    metrics = {name: scores[name][0] for name in used}
    reference, reference_summary = reference_scores(data, used)
    log("4. Predictions and evaluation")
    if data.true is not None:
        log_parameters(model, reference_summary, data.true, log)
    log(
        format_metrics_table(
            metrics, reference, "closed-form" if data.task == "regression" else "majority"
        )
    )

    if config.plots:
        draw_plots(
            out / "plots", data, history, outputs_before, outputs.get("test"), scores.get("test")
        )

    # 5. Saving and loading
    saved_config = config.to_dict() | {"out": ""}
    preprocess = data.encoder.to_dict() if data.encoder is not None else None
    check_rows = "test" if sizes["test"] else "train"
    for name in ("model.safetensors", "model.pth"):
        save(model, out / name, config=saved_config, preprocess=preprocess)
        loaded = load(out / name).to(device)
        if not torch.equal(outputs_of(loaded, X[check_rows]), outputs[check_rows]):
            raise RuntimeError(
                f"the model loaded from {out / name} predicts differently from the trained one"
            )
    log(
        f"5. Saved model.safetensors and model.pth; loaded each into a new model: predictions on the "
        f"{sizes[check_rows]} {check_rows} rows identical to the trained model's"
    )

    # 6. The run folder
    write_text_atomic(out / "config.toml", RunConfig.from_dict(saved_config).to_toml())
    written = ["config.toml", "metrics.csv", "summary.json", "model.safetensors", "model.pth"]
    if data.encoder is not None:
        write_predictions(out / "predictions.csv", data, model, device)
        written.append("predictions.csv")
    summary: dict[str, Any] = {
        "task": data.task,
        "metrics": metrics,
        "reference": reference_summary,
        "learned": {
            k: v.detach().cpu().reshape(-1).tolist() for k, v in model.state_dict().items()
        },
        "rows": {name: sizes[name] for name in used},
        "epochs_run": history.records[-1]["epoch"] + 1 if history.stopped_early else t.epochs,
        "stopped_early": history.stopped_early,
        "best_epoch": history.best_epoch,
        "seconds": seconds,
        "device": str(device),
        "seed": t.seed,
        "versions": {"torchwork": __version__, "torch": torch.__version__},
    }
    if data.true is not None:
        summary["true"] = data.true
    if data.task != "regression":
        summary["labels"] = data.labels
        summary["confusion_matrix"] = {name: scores[name][1]["confusion_matrix"] for name in used}
    if data.encoder is not None:
        summary["data"] = {
            "path": d.path,
            "target": data.encoder.target,
            "features": data.encoder.feature_names,
        }
    write_json(out / "summary.json", summary)
    log(f"6. Run folder: {out} ({', '.join(written)}{', plots/' if config.plots else ''})")
    return out


def outputs_of(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """The model's raw outputs in evaluation mode, as a CPU tensor."""
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        result = model(X).cpu()
    model.train(was_training)
    return result


def score(
    task: str, encoder: Any, outputs: torch.Tensor, y_raw: torch.Tensor
) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics of raw model outputs against the true target (its own units, or class indices)."""
    if task == "regression":
        predictions = (
            encoder.decode(outputs)["prediction"] if encoder is not None else outputs.reshape(-1)
        )
        return regression_metrics(predictions, y_raw), {"predictions": predictions}
    decoded = encoder.decode(outputs)
    classes = len(encoder.labels)
    positive = decoded["probabilities"][:, 1] if classes == 2 else None
    metrics = classification_metrics(decoded["index"], y_raw, classes, positive)
    return metrics, {
        "confusion_matrix": confusion_matrix(decoded["index"], y_raw, classes),
        **decoded,
    }


def reference_scores(
    data: Prepared, used: list[str]
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """The yardstick: closed-form least squares for regression, the majority class otherwise."""
    if data.task == "regression":
        exact = least_squares(data.part(data.X, "train"), data.part(data.y_raw, "train"))
        metrics = {
            name: regression_metrics(
                exact.predict(data.part(data.X, name)), data.part(data.y_raw, name)
            )
            for name in used
        }
        return metrics, {
            "method": "closed-form least squares on the training split (torch.linalg.lstsq)",
            "weight": exact.weight.reshape(-1).tolist(),
            "bias": exact.bias.reshape(-1).tolist(),
            "metrics": metrics,
        }
    classes = len(data.labels)
    train = data.part(data.y_raw, "train")
    majority = int(torch.bincount(train, minlength=classes).argmax())
    share = float((train == majority).double().mean())
    metrics = {}
    for name in used:
        truth = data.part(data.y_raw, name)
        guess = torch.full_like(truth, majority)
        metrics[name] = classification_metrics(
            guess, truth, classes, torch.full((len(truth),), share) if classes == 2 else None
        )
    return metrics, {
        "method": "majority class of the training split",
        "label": data.labels[majority],
        "metrics": metrics,
    }


def log_parameters(
    model: nn.Module, reference: dict[str, Any], true: dict[str, float], log: Callable[[str], None]
) -> None:
    """The learned line next to the exact answer and the truth."""
    line = learned_line(model)
    learned = [f"{v:.4f}" for v in line] if line is not None else ["(mlp)", "(mlp)"]
    log(f"  {'':<8}{'learned':>12}{'closed-form':>14}{'true':>10}")
    for i, name in enumerate(("weight", "bias")):
        log(f"  {name:<8}{learned[i]:>12}{reference[name][0]:>14.4f}{true[name]:>10.4f}")


def draw_plots(
    folder: Path,
    data: Prepared,
    history: Any,
    outputs_before: torch.Tensor,
    outputs_test: torch.Tensor | None,
    test_score: tuple[dict[str, float], dict[str, Any]] | None,
) -> None:
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
            test_score[1]["confusion_matrix"], data.labels, path=folder / "confusion_matrix.png"
        )
        return
    predictions = test_score[1]["predictions"]
    y_test = data.part(data.y_raw, "test")
    if data.x_plot is not None:
        before = (
            data.encoder.decode(outputs_before)["prediction"]
            if data.encoder is not None
            else outputs_before
        )
        x_train, y_train = data.part(data.x_plot, "train"), data.part(data.y_raw, "train")
        x_test = data.part(data.x_plot, "test")
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


def prediction_columns(encoder: Any, outputs: torch.Tensor) -> dict[str, Any]:
    """Predictions in the data's own terms, as named columns (plus class probabilities)."""
    import pyarrow as pa

    decoded = encoder.decode(outputs)
    if encoder.task == "regression":
        return {"prediction": pa.array(decoded["prediction"].numpy())}
    columns = {"prediction": pa.array(decoded["prediction"])}
    probabilities = decoded["probabilities"].numpy()
    for j, label in enumerate(encoder.labels):
        columns[f"probability_{label}"] = pa.array(probabilities[:, j])
    return columns


def write_predictions(path: Path, data: Prepared, model: nn.Module, device: torch.device) -> None:
    """predictions.csv: every row of the table in order, its split, target and prediction."""
    import pyarrow as pa

    which = ["train"] * len(data.X)
    for name in ("val", "test"):
        for row in data.rows[name].tolist():
            which[row] = name
    columns = {
        "split": pa.array(which),
        data.encoder.target: data.table.column(data.encoder.target),
    }
    columns |= prediction_columns(data.encoder, outputs_of(model, data.X.to(device)))
    write_table(pa.table(columns), path)


def write_table(table: Any, path: str | Path | None) -> None:
    """A table as CSV (or Parquet, by suffix), atomically; to stdout when path is None."""
    import csv
    import io

    import pyarrow.csv as pcsv

    # pyarrow quotes every header name; write a plain header and let it write the rows.
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(table.column_names)
    rows = io.BytesIO()
    pcsv.write_csv(table, rows, pcsv.WriteOptions(include_header=False, quoting_style="needed"))
    text = buffer.getvalue() + rows.getvalue().decode("utf-8")
    if path is None:
        sys.stdout.write(text)
        return
    path = Path(path)
    if not path.parent.is_dir():
        raise TorchworkError(f"cannot write {path}: folder {path.parent} does not exist")
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    else:
        write_text_atomic(path, text)


@dataclass
class Predictor:
    """A saved model with the preprocessing it was trained with."""

    model: nn.Module
    encoder: Any  # TableEncoder, or None for models of the line or bare .pth files
    path: Path

    @classmethod
    def from_file(cls, path: str | Path) -> Predictor:
        from torchwork.tables import TableEncoder

        path = Path(path)
        model = load(path)
        encoder = None
        if path.suffix.lower() == ".safetensors":
            preprocess = read_metadata(path)["preprocess"]
            encoder = TableEncoder.from_dict(preprocess) if preprocess else None
            if encoder is not None and encoder.in_features != model.spec()["in_features"]:
                raise TorchworkError(
                    f"{path}: its preprocessing does not match the model's input size"
                )
        return cls(model, encoder, path)

    def read(
        self, data: str | Path, target: str = "", need_target: bool = False
    ) -> tuple[Any, torch.Tensor]:
        """Read a table for this model: (table, encoded inputs), with every column checked."""
        from torchwork.tables import check_values, read_table, table_to_tensor

        source = str(data)
        if self.encoder is None and not need_target and str(data).lower().endswith(".npy"):
            import pyarrow as pa

            from torchwork.data import read_features

            X = read_features(data)  # a bare array of feature rows, no target column
            names = ["x"] if X.shape[1] == 1 else [f"x{i}" for i in range(X.shape[1])]
            return pa.table({n: X[:, j].numpy() for j, n in enumerate(names)}), X
        table = read_table(data)
        if self.encoder is None:
            features = (
                [n for n in table.column_names if n != target]
                if need_target
                else table.column_names
            )
            table = check_values(table, table.column_names, source, fix="fix or remove those rows")
            return table, table_to_tensor(table, features)
        if target and target != self.encoder.target:
            if target not in table.column_names:
                raise TorchworkError(
                    f"target column '{target}' is not in {source}; its columns are {', '.join(table.column_names)}"
                )
            table = table.rename_columns(
                [self.encoder.target if n == target else n for n in table.column_names]
            )
        expected = self.encoder.feature_names
        missing = [n for n in expected if n not in table.column_names]
        if missing:
            extra = [
                n for n in table.column_names if n not in expected and n != self.encoder.target
            ]
            raise TorchworkError(
                f"{source} lacks the model's column(s) {', '.join(missing)}"
                + (f"; it has other columns {', '.join(extra)}" if extra else "")
                + f"; the model needs {', '.join(expected)}"
            )
        if need_target and self.encoder.target not in table.column_names:
            raise TorchworkError(
                f"{source} has no target column '{self.encoder.target}': name it with --target"
            )
        checked = [*expected, self.encoder.target] if need_target else expected
        table = check_values(table, checked, source, fix="fix or remove those rows")
        return table, self.encoder.transform(table, source)

    def outputs(self, X: torch.Tensor) -> torch.Tensor:
        in_features = self.model.spec()["in_features"]
        if X.shape[1] != in_features:
            raise TorchworkError(
                f"the model takes {in_features} feature(s) per row, the input has {X.shape[1]}"
            )
        return outputs_of(self.model, X)


def predict_file(model_path: str | Path, data: str | Path, out: str | Path | None = None) -> Any:
    """Predict every row of a table file: its columns in order plus `prediction` (and class
    probabilities). Written to `out` (.csv or .parquet), else printed as CSV."""
    import pyarrow as pa

    predictor = Predictor.from_file(model_path)
    table, X = predictor.read(data)
    outputs = predictor.outputs(X)
    if predictor.encoder is None:
        columns = {
            **{n: table.column(n) for n in table.column_names},
            "prediction": pa.array(outputs.reshape(-1).numpy()),
        }
        result = pa.table(columns)
    else:
        result = table
        for name, column in prediction_columns(predictor.encoder, outputs).items():
            if name in result.column_names:
                result = result.drop_columns([name])
            result = result.append_column(name, column)
    write_table(result, out)
    return result


def evaluate_file(model_path: str | Path, data: str | Path, target: str = "") -> dict[str, Any]:
    """The metrics of a saved model on a labelled table: {"task", "rows", "metrics", ...}."""
    predictor = Predictor.from_file(model_path)
    encoder = predictor.encoder
    if encoder is None:
        from torchwork.tables import read_table, table_to_tensor

        names = read_table(data).column_names
        target = target or names[-1]
        table, X = predictor.read(data, target=target, need_target=True)
        metrics, _ = score(
            "regression", None, predictor.outputs(X), table_to_tensor(table, [target])
        )
        return {"task": "regression", "rows": table.num_rows, "target": target, "metrics": metrics}
    table, X = predictor.read(data, target=target, need_target=True)
    outputs = predictor.outputs(X)
    if encoder.task == "regression":
        truth = encoder.target_values(table)
    else:
        truth = encoder.label_index(table.column(encoder.target), str(data))
    metrics, details = score(encoder.task, encoder, outputs, truth)
    result = {
        "task": encoder.task,
        "rows": table.num_rows,
        "target": encoder.target,
        "metrics": metrics,
    }
    if encoder.task != "regression":
        result["labels"] = encoder.labels
        result["confusion_matrix"] = details["confusion_matrix"]
    return result


def learned_line(model: nn.Module) -> tuple[float, float] | None:
    """(weight, bias) of a one-feature linear model, else None."""
    state = model.state_dict()
    for w, b in (("weights", "bias"), ("linear_layer.weight", "linear_layer.bias")):
        if set(state) == {w, b} and state[w].numel() == 1:
            return float(state[w]), float(state[b])
    return None


def describe_parameters(model: nn.Module) -> str:
    """Small parameters by value (the course prints its state_dict), large ones by count."""
    state = model.state_dict()
    if all(v.numel() <= 4 for v in state.values()):
        return ", ".join(
            f"{k} " + " ".join(f"{x:.4f}" for x in v.reshape(-1).tolist()) for k, v in state.items()
        )
    total = sum(v.numel() for v in state.values())
    return f"{total} parameters in {len(state)} tensors"
