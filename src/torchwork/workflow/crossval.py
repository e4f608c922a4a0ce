"""Would another split have given another number? `--folds K` fits K models before the final
one, each validated on one of K folds of the training and validation rows (by class for
classification) and scored on that fold and on the test split; `--repeats N` does that N
times with new seeds (without --folds: N fits of the run's own split, each with a new seed).
Every metric comes back as its mean and standard deviation over the fits.

The data is read and encoded once, for the run: the folds are row numbers into the encoded
tensors, so a fold's fit costs what a fit costs. The encoder (a table's scaling, an image
model's pixel statistics) is the run's own, fitted on its training split, so a fold's
validation rows may have informed the scaling (not the weights); the test split never does.
The fits are not kept: the final model is trained and saved as the flags say.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from torchwork.data import fold_indices
from torchwork.engine import fit
from torchwork.errors import ConfigError, FitsInterrupted
from torchwork.kinds.base import cat_rows
from torchwork.metrics import spread
from torchwork.optim import optimizer_for
from torchwork.predict import outputs_of, score
from torchwork.report.text import format_spread
from torchwork.workflow.session import fresh_model
from torchwork.workflow.signals import StopSignals
from torchwork.workflow.train import fit_options

if TYPE_CHECKING:
    from torchwork.workflow.session import Session


def cross_validate(session: Session, log: Callable[[str], None]) -> dict[str, Any] | None:
    """The fits of --folds and --repeats, as summary.json's `cross_validation`; None when
    neither is asked for. Raises ConfigError (before anything is written) when a class has
    fewer rows than folds."""
    t = session.config.train
    if not t.folds and t.repeats <= 1:
        return None
    if session.group is not None:
        raise ConfigError("--folds and --repeats run in one process: drop --nproc")
    data, X, y = session.data, session.X, session.y
    classification = data.task != "regression"
    pool = {
        "X": cat_rows([X["train"], X["val"]]),
        "y": torch.cat([y["train"], y["val"]]),
        "y_raw": torch.cat([data.y_raw["train"], data.y_raw["val"]]),
    }
    rows = len(pool["X"])
    if t.folds:
        _check_folds(
            t.folds,
            rows,
            pool["y_raw"] if classification else None,
            data.labels,
            task_given=session.config.data.task != "auto",
        )
        what = (
            f"{t.folds} folds of the {rows:,} train + val rows"
            + (" (by class)" if classification else "")
            + (f", {t.repeats} times" if t.repeats > 1 else "")
        )
    else:
        what = f"{t.repeats} fits of the split, seeds {t.seed} to {t.seed + t.repeats - 1}"
    log(f"3. Cross-validation: {what}; then the final model")
    total = t.repeats * (t.folds or 1)
    started = time.perf_counter()
    fits: list[dict[str, Any]] = []
    nothing = "nothing was written (the run folder is made once the fits are done)"
    with StopSignals(log, when="after this fit", at_once=nothing) as stop:
        for repeat in range(t.repeats):
            seed = t.seed + repeat
            labels = pool["y_raw"].reshape(-1) if classification else None
            folds = fold_indices(rows, t.folds, labels, seed) if t.folds else []
            for k in range(len(folds) or 1):
                if folds:
                    kept = torch.cat([f for i, f in enumerate(folds) if i != k])
                    train_part = {name: tensor[kept] for name, tensor in pool.items()}
                    val_part = {name: tensor[folds[k]] for name, tensor in pool.items()}
                    where = {"repeat": repeat + 1, "fold": k + 1}
                else:
                    train_part = {"X": X["train"], "y": y["train"], "y_raw": data.y_raw["train"]}
                    val_part = {"X": X["val"], "y": y["val"], "y_raw": data.y_raw["val"]}
                    where = {"repeat": repeat + 1}
                fits.append(_fit(session, seed, train_part, val_part) | where)
                _log_fit(fits[-1], t.folds, t.repeats, log)
                if len(fits) == 1 and total > 1:
                    log(_estimate(time.perf_counter() - started, total))
                if stop.received is not None:
                    raise FitsInterrupted(stop.received, len(fits), total)
    seconds = time.perf_counter() - started
    result = {
        "folds": t.folds,
        "repeats": t.repeats,
        "rows": rows if t.folds else len(X["train"]),
        "fits": fits,
        "mean": _over_fits(fits, statistics.fmean),
        "std": _over_fits(fits, spread),
        "seconds": seconds,
        "final_model": "trained on the train split as the flags say; the fits are not kept",
    }
    log(format_spread(result))
    log(f"   {len(fits)} fits in {seconds:.1f} s; now the final model")
    return result


def _check_folds(
    folds: int, rows: int, labels: torch.Tensor | None, names: list[Any], task_given: bool
) -> None:
    """Refuse folds that cannot be made, saying what works: fewer folds where at least two
    can be made, else no cross-validation (--folds 0) or more rows."""
    if folds > rows:
        fewer = f"--folds {rows} or fewer, or " if rows >= 2 else ""
        raise ConfigError(
            f"--folds {folds} is more than the {rows} train + val rows: use {fewer}--folds 0 "
            "(no cross-validation)"
        )
    if labels is None:
        return
    counts = torch.bincount(labels.reshape(-1).long(), minlength=len(names))
    present = [(int(n), k) for k, n in enumerate(counts.tolist()) if n > 0]
    fewest, k = min(present)
    if fewest >= folds:
        return
    works = (
        f"use --folds {fewest} or fewer, or --folds 0 (no cross-validation)"
        if fewest >= 2
        else f"use --folds 0 (no cross-validation), or give every class at least {folds} rows"
    )
    # A target of a few whole numbers is taken for classes: it may be a quantity
    numbers = all(isinstance(n, int) and not isinstance(n, bool) for n in names)
    if numbers and not task_given:
        works += (
            f"; the target's {len(names)} whole numbers were taken for classes: "
            "for a quantity, add --task regression"
        )
    raise ConfigError(
        f"--folds {folds} is more than the {fewest} train + val "
        f"{'row' if fewest == 1 else 'rows'} of class {str(names[k])[:40]!r}: every fold "
        f"needs each class; {works}"
    )


def _fit(
    session: Session, seed: int, train: dict[str, torch.Tensor], val: dict[str, torch.Tensor]
) -> dict[str, Any]:
    """One fit from a fresh model seeded `seed`; its metrics on `val` and on the test split."""
    config = copy.deepcopy(session.config)
    config.train.seed = seed
    t = config.train
    model = fresh_model(config, session.data).to(session.device)
    optimizer = optimizer_for(t.optimizer, model, lr=t.lr, momentum=t.momentum)
    history = fit(
        model,
        train["X"],
        train["y"],
        session.X["test"],
        session.y["test"],
        session.loss_fn,
        optimizer,
        t.epochs,
        X_val=val["X"],
        y_val=val["y"],
        seed=seed,
        log=None,
        **fit_options(session),
    )
    parts = {"val": val} | (
        {"test": {"X": session.X["test"], "y_raw": session.data.y_raw["test"]}}
        if len(session.X["test"])
        else {}
    )
    metrics = {
        name: score(
            session.data.task, session.data.encoder, outputs_of(model, part["X"]), part["y_raw"]
        ).metrics
        for name, part in parts.items()
        if len(part["X"])
    }
    return {"seed": seed, "epochs_run": history.epochs_run, "metrics": metrics}


def _log_fit(one: dict[str, Any], folds: int, repeats: int, log: Callable[[str], None]) -> None:
    where = f"fold {one['fold']}/{folds}" if folds else "fit"
    if repeats > 1:
        where += f", repeat {one['repeat']}/{repeats}"
    scores = "; ".join(
        f"{split} {name} {value:.4f}"
        for split, values in one["metrics"].items()
        for name, value in list(values.items())[:1]
    )
    log(f"   {where} (seed {one['seed']}): {one['epochs_run']} epochs; {scores}")


def _estimate(seconds: float, total: int) -> str:
    """How long all the fits will take, from the first one's time."""
    left = seconds * total
    if left < 90:
        took = f"{left:.0f} s"
    elif left < 5400:
        took = f"{left / 60:.0f} min"
    else:
        took = f"{left // 3600:.0f} h {left % 3600 / 60:02.0f} min"
    return f"   The first fit took {seconds:.1f} s: the {total:,} fits, about {took} in all"


def _over_fits(
    fits: list[dict[str, Any]], reduce: Callable[[list[float]], float]
) -> dict[str, dict[str, float]]:
    """Each split's metrics reduced over the fits that scored that split."""
    result: dict[str, dict[str, float]] = {}
    for split in ("val", "test"):
        scored = [f["metrics"][split] for f in fits if split in f["metrics"]]
        if scored:
            result[split] = {name: reduce([m[name] for m in scored]) for name in scored[0]}
    return result
