"""Step 6, all together: the six steps in order. `torchwork run` calls `run(config)`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchwork import __version__
from torchwork.checkpoint import load, save
from torchwork.config import RunConfig
from torchwork.data import Splits, make_line, split
from torchwork.engine import fit, make_loss, make_optimizer
from torchwork.errors import TorchworkError
from torchwork.fileio import write_text_atomic
from torchwork.metrics import regression_metrics
from torchwork.models import build_model
from torchwork.plots import plot_loss_curves, plot_predictions
from torchwork.report import create_run_dir, format_metrics_table, resolve_run_dir, write_json
from torchwork.solve import least_squares


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


def run(config: RunConfig, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Run the whole workflow and return the run folder.

    >>> folder = run(RunConfig(out="runs/demo"))  # doctest: +SKIP
    """
    config.validate()
    d, m, t = config.data, config.model, config.train
    out = resolve_run_dir(config.out, force)
    device = resolve_device(t.device)

    # 1. Data
    X, y = make_line(d.weight, d.bias, d.start, d.end, d.step, d.noise, seed=t.seed)
    s = split(X, y, d.train, d.val, d.test, shuffle=d.shuffle, seed=t.seed)
    log(f"torchwork {__version__} | torch {torch.__version__} | device {device} | seed {t.seed}")
    log(
        f"1. Data: y = {d.weight:g} * X + {d.bias:g}"
        + (f" + noise (std {d.noise:g})" if d.noise else "")
        + f", {len(X)} rows; split {describe_split(s)}"
    )

    # 2. Model, loss function, optimizer
    torch.manual_seed(t.seed)
    model = build_model(m.kind, in_features=X.shape[1], out_features=1, hidden=m.hidden)
    loss_fn = make_loss(t.loss)
    log(
        f"2. Model: {type(model).__name__} ({m.kind}); loss {type(loss_fn).__name__}; optimizer {t.optimizer} (lr {t.lr:g})"
    )
    log(f"   Initial parameters: {describe_parameters(model)}")

    out = create_run_dir(out)
    X_train, y_train, X_val, y_val, X_test, y_test = (v.to(device) for v in s)
    model.to(device)
    optimizer = make_optimizer(t.optimizer, model.parameters(), lr=t.lr, momentum=t.momentum)
    with torch.inference_mode():
        model.eval()
        y_preds_before = model(X_test).cpu()
    model.train()

    # 3. Training
    log(
        f"3. Training for {t.epochs} epochs ({'full batch' if t.batch_size == 0 else f'batches of {t.batch_size}'})"
    )
    started = time.perf_counter()
    history = fit(
        model,
        X_train,
        y_train,
        X_test,
        y_test,
        loss_fn,
        optimizer,
        t.epochs,
        X_val=X_val,
        y_val=y_val,
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
    model.eval()
    splits = {
        "train": (s.X_train, s.y_train),
        "val": (s.X_val, s.y_val),
        "test": (s.X_test, s.y_test),
    }
    splits = {name: xy for name, xy in splits.items() if len(xy[0]) > 0}
    with torch.inference_mode():
        predictions = {name: model(xy[0].to(device)).cpu() for name, xy in splits.items()}
    metrics = {name: regression_metrics(predictions[name], xy[1]) for name, xy in splits.items()}
    exact = least_squares(s.X_train, s.y_train)
    reference = {
        name: regression_metrics(exact.predict(xy[0]), xy[1]) for name, xy in splits.items()
    }
    learned = {k: v.detach().cpu().reshape(-1).tolist() for k, v in model.state_dict().items()}
    line = learned_line(model)
    log("4. Predictions and evaluation")
    rows = [("", "learned", "closed-form", "true")]
    if line is not None:
        rows.append(("weight", f"{line[0]:.4f}", f"{float(exact.weight):.4f}", f"{d.weight:.4f}"))
        rows.append(("bias", f"{line[1]:.4f}", f"{float(exact.bias):.4f}", f"{d.bias:.4f}"))
    else:
        rows.append(("weight", "(mlp)", f"{float(exact.weight):.4f}", f"{d.weight:.4f}"))
        rows.append(("bias", "(mlp)", f"{float(exact.bias):.4f}", f"{d.bias:.4f}"))
    for r in rows:
        log(f"  {r[0]:<8}{r[1]:>12}{r[2]:>14}{r[3]:>10}")
    log(format_metrics_table(metrics, reference))

    if config.plots:
        plots = out / "plots"
        plots.mkdir(exist_ok=True)
        plot_predictions(
            s.X_train,
            s.y_train,
            s.X_test,
            s.y_test,
            y_preds_before,
            path=plots / "predictions_before.png",
            title="Predictions before training",
        )
        plot_predictions(
            s.X_train,
            s.y_train,
            s.X_test,
            s.y_test,
            predictions.get("test"),
            path=plots / "predictions_after.png",
            title="Predictions after training",
        )
        plot_loss_curves(
            history.column("epoch"),
            history.column("train_loss"),
            history.column("test_loss"),
            history.column("val_loss"),
            path=plots / "loss_curves.png",
        )

    # 5. Saving and loading
    saved_config = config.to_dict() | {"out": ""}
    check_X = (s.X_test if len(s.X_test) else s.X_train).to(device)
    with torch.inference_mode():
        y_preds = model(check_X)
    for name in ("model.safetensors", "model.pth"):
        save(model, out / name, config=saved_config)
        loaded = load(out / name).to(device)
        with torch.inference_mode():
            loaded_model_preds = loaded(check_X)
        if not torch.equal(y_preds, loaded_model_preds):
            raise RuntimeError(
                f"the model loaded from {out / name} predicts differently from the trained one"
            )
    log(
        f"5. Saved model.safetensors and model.pth; loaded each into a new model: predictions on the "
        f"{len(check_X)} {'test' if len(s.X_test) else 'training'} rows identical to the trained model's"
    )

    # 6. The run folder
    config_toml = RunConfig.from_dict(saved_config).to_toml()
    write_text_atomic(out / "config.toml", config_toml)
    summary: dict[str, Any] = {
        "metrics": metrics,
        "reference": {
            "method": "closed-form least squares on the training split (torch.linalg.lstsq)",
            "weight": exact.weight.reshape(-1).tolist(),
            "bias": exact.bias.reshape(-1).tolist(),
            "metrics": reference,
        },
        "learned": learned,
        "true": {"weight": d.weight, "bias": d.bias},
        "rows": {name: len(xy[0]) for name, xy in splits.items()},
        "epochs_run": history.records[-1]["epoch"] + 1 if history.stopped_early else t.epochs,
        "stopped_early": history.stopped_early,
        "best_epoch": history.best_epoch,
        "seconds": seconds,
        "device": str(device),
        "seed": t.seed,
        "versions": {"torchwork": __version__, "torch": torch.__version__},
    }
    write_json(out / "summary.json", summary)
    log(
        f"6. Run folder: {out} (config.toml, metrics.csv, summary.json, model.safetensors, model.pth"
        + (", plots/)" if config.plots else ")")
    )
    return out


def describe_split(s: Splits) -> str:
    parts = [f"{len(s.X_train)} train"]
    if len(s.X_val):
        parts.append(f"{len(s.X_val)} val")
    parts.append(f"{len(s.X_test)} test")
    return " / ".join(parts)


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
