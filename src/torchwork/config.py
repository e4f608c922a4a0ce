"""Run configuration: nested dataclasses with one commented default each, TOML in and out.

This module must stay cheap to import (no torch): `torchwork --help` and `--print-config`
use it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchwork import registry
from torchwork.errors import ConfigError, TorchworkError
from torchwork.registry import MODEL_TASKS

MODELS = tuple(registry.MODELS)
LOSSES = ("auto", *registry.LOSSES)  # auto: by the task (registry.AUTO_LOSS)
SPLITS = ("train", "val", "test")  # the splits of a run's rows, in the order they are used
TASKS = ("auto", *MODEL_TASKS)  # --task: auto finds it from the target column
MAX_LINE_ROWS = 10_000_000  # the built-in line is a teaching set; tables have no such limit
THRESHOLD_METRICS = ("f1", "accuracy")  # what --threshold auto may maximise
MAX_FOLDS = 100  # --folds and --repeats: each is a whole fit
MAX_THREADS = 1024  # --threads: more only guards against typos
# serve --max-pixels: an upload decodes to a few bytes a pixel; Pillow's own limit (89 million
# pixels) would let each of the server's threads hold a gigabyte. 25 million is a
# 24-megapixel camera's photo.
SERVE_MAX_PIXELS = 25_000_000
MAX_HIDDEN_LAYERS = 100  # a small MLP; more only guards against typos and hostile model files
CATEGORICAL = ("auto", "none")
DECIMALS = (".", ",")

# Settings that reliably converge on standardized tabular features; used when a run reads a
# table (data.path) and the user set none of them. The course defaults stay for the line.
TABLE_DEFAULTS: dict[str, Any] = {
    "data.shuffle": True,  # real tables are often sorted: split them at random
    "model.kind": "linear",  # nn.Linear over every feature (logistic regression for binary)
    "train.loss": "auto",  # mse for regression, BCEWithLogits for binary, CrossEntropy for multiclass
    "train.optimizer": "auto",  # lbfgs for a linear model, adam for an mlp (choose_training)
    "train.lr": "auto",  # by the optimizer and batch size (choose_training)
    "train.batch_size": "auto",  # full batch, or minibatches for an mlp on many rows
    "train.epochs": 500,  # the upper bound: the run stops when the training loss converges
    "train.tol": "auto",  # by the optimizer (AUTO_TOL); off when --epochs is given
    "train.l2_c": "auto",  # a linear classifier's L2 penalty: chosen on --val, else C = 1
}
AUGMENTS = ("flip", "shift", "none")  # flips and small shifts; shifts alone; none
SCHEDULES = ("none", "cosine")  # the learning rate: constant, or cosine decay over the epochs
TABLE_VAL_PATIENCE = 20  # early stopping when a table run asks for a validation split...
# ...unless its model is linear and trained by L-BFGS, which runs to convergence: on
# scikit-learn's diabetes it stopped at epoch 3 with s1 -191 against least squares' -826.
# A linear classifier's validation rows choose its L2 penalty instead: scikit-learn's C (the
# summed loss times C plus half the squared weights: the mean loss plus ||weights||² /
# (2 C rows)), the one of L2_C_GRID with the lowest validation loss, each fitted to
# convergence; without validation rows, scikit-learn's default C = 1.
L2_C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
L2_C_DEFAULT = 1.0
L2_C_WORDS = ("auto", "none")  # --l2-c's words: chosen on --val (else 1); no penalty
MLP_SPLIT = (0.7, 0.1)  # an mlp on a table: training and validation fractions (test stays)
# ...and on a table of fewer rows than this, twice the validation rows: on scikit-learn's
# diabetes (442 rows) 44 of them stopped training too early or too late at random. Test
# metric on the same test rows (data.split_sizes), mean over seeds 0 to 5 and 42, linear /
# mlp 0.6-0.2: diabetes R² 0.470 / 0.457, wine accuracy 0.980 / 0.980, iris 0.981 / 0.981,
# breast cancer 0.956 / 0.967.
MLP_SMALL_ROWS = 2000
MLP_SMALL_SPLIT = (0.6, 0.2)
MLP_PATIENCE = 10  # and its early stopping, as scikit-learn's n_iter_no_change
OPTIMIZERS = ("auto", *registry.OPTIMIZERS)  # auto: choose_training
AUTO = "auto"
# choose_training's rules, measured on tables of 10,000 and 200,000 rows on 2 cores
# (benchmarks/tables.py): an mlp with batches of 256, 512, 1024 and 2048 reached the same
# test metric on 200,000 rows (R² 0.9961, accuracy 0.840) in 15 to 24 epochs, 1024 with lr
# 0.003 in the least time; on 10,000 rows a full batch stopped early long before scikit-learn's
# answer (R² 0.9878 against 0.9929): about 32 steps an epoch are needed.
AUTO_BATCH_SIZE = 1024  # rows per step for an mlp on many rows, at most
AUTO_STEPS = 32  # ...and at least this many steps an epoch on fewer rows, batches of 32 or more
AUTO_LR = {"lbfgs": 1.0, "mlp minibatches": 0.003, "otherwise": 0.01}  # mlp: for 1024 rows
# Converged when the training loss improves by no more than this for tol_epochs epochs.
# L-BFGS's loss changes little while its weights still move: on breast cancer it stopped at
# epoch 23 with 1e-4, its weights 1.6e-3 (of the largest) from the optimum; with 1e-6 at
# epoch 30, 9e-5, as close as float32 gets (scikit-learn's default answer is 9e-3 away).
AUTO_TOL = {"lbfgs": 1e-6, "otherwise": 1e-4}
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class DataConfig:
    weight: float = 0.7  # the true weight of the built-in line y = weight * X + bias
    bias: float = 0.3  # the true bias of the built-in line
    start: float = 0.0  # first X of the line
    end: float = 1.0  # X stops before this value
    step: float = 0.02  # distance between consecutive X values (50 rows by default)
    noise: float = 0.0  # std of Gaussian noise added to y
    train: float = 0.8  # fraction of rows for training (int(train * rows), like the course)
    val: float = 0.0  # fraction of rows for validation (0 = no validation split)
    test: float = 0.2  # fraction of rows for testing
    shuffle: bool = False  # shuffle rows (seeded) before splitting; the course splits in order
    path: str = ""  # a table to learn from (.csv .tsv .parquet .xlsx .npy .npz); empty = the line
    target: str = ""  # the table's target column; empty = its last column
    features: list[str] = field(default_factory=list)  # feature columns; empty = all the others
    exclude: list[str] = field(default_factory=list)  # columns left out (IDs, leaks)
    kinds: list[str] = field(default_factory=list)  # column=kind pairs over recognition
    task: str = "auto"  # auto, regression, binary or multiclass
    dropna: bool = False  # drop rows with empty or NaN cells (else they are an error)
    na_values: list[str] = field(default_factory=list)  # more cell texts that mean missing: ?
    categorical: str = "auto"  # auto: text of a few distinct values is categories; none: refuse
    scale: bool = True  # standardize numeric table features (fitted on the training rows only)
    scale_target: bool = True  # standardize a regression target; predictions are mapped back
    max_categories: int = (
        0  # a text column's most frequent categories kept, the rest one "other"; 0: all
    )
    delimiter: str = "auto"  # CSV field separator; auto: found from the file's first lines
    decimal: str = "."  # CSV decimal mark: . or , (as in 3,14)
    encoding: str = "utf-8"  # CSV text encoding, for example latin-1 or cp1252
    split_by_rows: bool = False  # the split is chosen once the table is read (choose_split)
    image_size: int = 0  # images: resized to this many pixels a side; 0: auto (64 or less)
    channels: int = 3  # images: 3 (RGB) or 1 (grey)
    augment: str = "flip"  # images: flip (flips, small shifts), shift (no flips), none
    skip_bad: bool = False  # drop pictures and text files that cannot be read (else an error)


@dataclass
class ModelConfig:
    kind: str = "params"  # params (the course's model_0), linear, mlp; tinyvgg, cnn for images
    hidden: list[int] = field(default_factory=lambda: [64, 64])  # mlp layer sizes, cnn widths


@dataclass
class TrainConfig:
    loss: str = "l1"  # l1, mse, huber; bce, ce for classification; auto: chosen by the task
    optimizer: str = "sgd"  # sgd, adam, adamw, lbfgs; auto: lbfgs for linear, adam for mlp
    lr: float | str = 0.01  # learning rate; auto: by the optimizer and batch size
    momentum: float = 0.0  # SGD momentum
    epochs: int = 300  # passes over the training data (the course exercise uses 300)
    batch_size: int | str = 0  # rows per step; 0 = the whole training split (full batch); auto
    patience: int | str = 0  # early stopping after this many epochs without a better val loss;
    # auto (tables with --val): TABLE_VAL_PATIENCE, or 0 for a linear model trained by L-BFGS
    # a linear classifier's L2 penalty as scikit-learn's C (smaller: stronger); none: no
    # penalty; auto (tables): chosen on the validation rows, else 1 (L2_C_GRID)
    l2_c: float | str = "none"
    schedule: str = "none"  # learning rate: none (constant) or cosine (decays to 0 over --epochs)
    tol: float | str = 0.0  # converged when the training loss improves by no more than this...
    tol_epochs: int = 10  # ...for this many epochs in a row; tol 0 = run every epoch
    log_every: int = 10  # record and print the losses every this many epochs
    eval_every: int = 0  # also compute the test loss every N epochs (0: only when recording)
    seed: int = 42  # seeds model initialisation, shuffling and noise
    class_weight: str = ""  # classification: balanced, or label=weight,... in the loss
    folds: int = 0  # cross-validate over this many folds of train + val before the final fit
    repeats: int = 1  # fits for each fold (or of the split), each with the next seed
    checkpoint_every: int = 0  # write a resume checkpoint every N epochs; 0: every 30 seconds
    device: str = "auto"  # auto (CUDA when available), cpu, cuda or mps
    threads: int = 0  # torch's CPU threads; 0: auto, the cores not busy with other work


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str = ""  # run folder; empty = a new timestamped folder under runs/
    plots: bool = True  # draw the PNG pictures
    reference: bool = True  # compute the closed-form (or majority-class) reference
    interval: float = 0.0  # regression: split-conformal prediction intervals at this coverage
    calibrate: bool = False  # classification: temperature scaling fitted on the validation split
    threshold: float | str = 0.5  # binary: positive at this probability; auto: best on val
    threshold_metric: str = "f1"  # what --threshold auto maximises on the validation split
    tensorboard: bool = False  # also log the losses for TensorBoard, in <run>/tensorboard

    def validate(self, stored: bool = False) -> RunConfig:
        """Raise TorchworkError naming the flag to change when a value is out of range.

        `stored`: the config of a model file or checkpoint (see `stored_config`): the same
        limits, without the rules that only stop a run from ignoring a flag (files written
        before such a rule existed stay readable).
        """
        d, m, t = self.data, self.model, self.train
        for name in ("weight", "bias", "start", "end", "step", "noise"):
            value = getattr(d, name)
            _check(math.isfinite(value), f"--{name} must be a finite number (got {value})")
        _check(d.step > 0, f"--step must be greater than 0 (got {d.step})")
        _check(d.start < d.end, f"--start ({d.start}) must be less than --end ({d.end})")
        _check(d.noise >= 0, f"--noise must be 0 or more (got {d.noise})")
        rows = (d.end - d.start) / d.step
        _check(
            rows <= MAX_LINE_ROWS,
            f"the line would have {rows:.3g} rows, more than {MAX_LINE_ROWS}: use a larger --step",
        )
        for name in ("train", "val", "test"):
            value = getattr(d, name)
            _check(0 <= value <= 1, f"--{name} must be a fraction between 0 and 1 (got {value})")
        total = d.train + d.val + d.test
        _check(
            total <= 1 + 1e-9,
            f"--train, --val and --test add up to {total:g}, more than 1: lower one of them "
            "(for example --train 0.7 --val 0.1 --test 0.2)",
        )
        _check(
            m.kind in MODELS, f"unknown model {shown(m.kind)}: use --model {' or '.join(MODELS)}"
        )
        _check(
            len(m.hidden) <= MAX_HIDDEN_LAYERS,
            f"--hidden gives {len(m.hidden):,} layers, more than {MAX_HIDDEN_LAYERS}: "
            "give fewer sizes such as 64,64",
        )
        _check(
            len(m.hidden) > 0 and all(h >= 1 for h in m.hidden),
            f"--hidden must be a list of positive layer sizes such as 64,64 (got {shown(m.hidden)})",
        )
        _check(d.task in TASKS, f"unknown task '{d.task}': use --task {' or '.join(TASKS)}")
        _check(
            d.image_size == 0 or MIN_IMAGE_SIZE <= d.image_size <= MAX_IMAGE_SIZE,
            f"--image-size must be 0 (auto) or {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels (got {d.image_size})",
        )
        _check(d.channels in (1, 3), f"--channels must be 1 (grey) or 3 (RGB), not {d.channels}")
        _check(
            d.augment in AUGMENTS,
            f"unknown --augment {shown(d.augment)}: use {' or '.join(AUGMENTS)}",
        )
        _check(
            t.schedule in SCHEDULES,
            f"unknown --schedule {shown(t.schedule)}: use {' or '.join(SCHEDULES)}",
        )
        if not stored and m.kind in MODELS:
            # What a folder of class folders holds decides the models that fit it; a table's
            # columns are known once it is read (models.build_model says then).
            kind = folder_kind(d.path) if d.path and is_folder(d.path) else ""
            needs = registry.MODELS[m.kind].needs
            if kind:
                # the models of that kind's own layer (pictures: cnn, tinyvgg); else a head
                # over the kind's layer (text: linear, mlp)
                fits = [k for k, e in registry.MODELS.items() if e.needs == kind] or [
                    k for k, e in registry.MODELS.items() if not e.needs and e.columns
                ]
                noun = registry.KINDS[kind].noun
                learns = registry.KINDS[needs].noun if needs else "rows"
                _check(
                    m.kind in fits,
                    f"--model {m.kind} learns from {learns}, and {d.path} is a folder of {noun}: "
                    f"use --model {' or '.join(fits)}",
                )
            elif not d.path:
                fits = [k for k, e in registry.MODELS.items() if not e.needs]
                _check(
                    not needs,
                    f"--model {m.kind} learns from {registry.KINDS[needs].noun if needs else ''}, "
                    f"and the line is rows: use --model {' or '.join(fits)}",
                )
        _check(
            d.categorical in CATEGORICAL,
            f"unknown --categorical '{d.categorical}': use {' or '.join(CATEGORICAL)}",
        )
        _check(
            d.max_categories == 0 or d.max_categories >= 2,
            f"--max-categories must be 0 (keep all) or at least 2 (got {d.max_categories})",
        )
        _check(
            d.delimiter == AUTO or (len(d.delimiter) == 1 and d.delimiter not in '"\r\n'),
            f"--delimiter must be one character such as ';' or auto (got {d.delimiter!r})",
        )
        _check(d.decimal in DECIMALS, f"--decimal must be . or , (got {d.decimal!r})")
        _check(
            d.decimal == "." or d.delimiter != ",",
            "--decimal , needs another --delimiter than ',' (for example ';')",
        )
        _check(
            _known_encoding(d.encoding),
            f"unknown --encoding {d.encoding!r}: use for example latin-1",
        )
        config_kinds(d.kinds)  # column=kind pairs of known kinds
        _check(
            not set(d.features) & set(d.exclude),
            f"column(s) {', '.join(sorted(set(d.features) & set(d.exclude)))} are both in "
            "--features and --exclude: give one of them",
        )
        _check(t.loss in LOSSES, f"unknown loss '{t.loss}': use --loss {' or '.join(LOSSES)}")
        _check(
            t.optimizer in OPTIMIZERS,
            f"unknown optimizer '{t.optimizer}': use --optimizer {' or '.join(OPTIMIZERS)}",
        )
        _check(
            t.lr == AUTO or (isinstance(t.lr, float) and math.isfinite(t.lr) and t.lr > 0),
            f"--lr must be greater than 0, or auto (got {t.lr})",
        )
        _check(0 <= t.momentum < 1, f"--momentum must be in [0, 1) (got {t.momentum})")
        _check(
            stored or t.momentum == 0 or t.optimizer == "sgd",
            f"--momentum is SGD's: --optimizer {t.optimizer} would ignore it; drop --momentum "
            "or use --optimizer sgd",
        )
        _check(t.epochs >= 1, f"--epochs must be at least 1 (got {t.epochs})")
        _check(
            t.batch_size == AUTO or (isinstance(t.batch_size, int) and t.batch_size >= 0),
            f"--batch-size must be 0 (full batch), more, or auto (got {t.batch_size})",
        )
        _check(
            t.optimizer != "lbfgs" or t.batch_size in (0, AUTO),
            f"--optimizer lbfgs trains on the full batch: drop --batch-size {t.batch_size} "
            "(or use --optimizer adam for minibatches)",
        )
        _check(
            t.tol == AUTO or (isinstance(t.tol, float) and math.isfinite(t.tol) and t.tol >= 0),
            f"--tol must be 0 (off), a small positive number such as 1e-4, or auto (got {t.tol})",
        )
        _check(t.tol_epochs >= 1, f"--tol-epochs must be at least 1 (got {t.tol_epochs})")
        _check(
            t.patience == AUTO or (isinstance(t.patience, int) and t.patience >= 0),
            f"--patience must be 0 (off), more, or auto (got {t.patience})",
        )
        _check(
            t.patience in (0, AUTO) or d.val > 0,
            "--patience needs a validation split: add --val, for example --train 0.7 --val 0.1",
        )
        _check(
            t.l2_c in L2_C_WORDS
            or (isinstance(t.l2_c, float) and math.isfinite(t.l2_c) and t.l2_c > 0),
            "--l2-c must be a number above 0 such as 1 (smaller: a stronger penalty), auto or "
            f"none (got {shown(t.l2_c, 40)})",
        )
        _check(t.eval_every >= 0, f"--eval-every must be 0 or more (got {t.eval_every})")
        _check(t.log_every >= 1, f"--log-every must be at least 1 (got {t.log_every})")
        _check(
            t.checkpoint_every >= 0,
            f"--checkpoint-every must be 0 (every 30 seconds) or more (got {t.checkpoint_every})",
        )
        _check(
            0 <= t.threads <= MAX_THREADS,
            f"--threads must be 0 (auto) or 1 to {MAX_THREADS} (got {t.threads})",
        )
        _check(0 <= t.seed < 2**63, f"--seed must be between 0 and 2**63 - 1 (got {t.seed})")
        _check(
            math.isfinite(self.interval) and 0 <= self.interval < 1,
            f"--interval must be a coverage between 0 and 1, such as 0.9 (got {self.interval})",
        )
        _check(
            not self.interval or d.val > 0,
            "--interval is fitted on a validation split: add --val, for example "
            "--train 0.6 --val 0.2",
        )
        _check(
            self.threshold == "auto"
            or (
                isinstance(self.threshold, (int, float))
                and not isinstance(self.threshold, bool)
                and 0 < self.threshold < 1
            ),
            "--threshold must be auto or a probability between 0 and 1, such as 0.3 "
            f"(got {self.threshold})",
        )
        _check(
            self.threshold_metric in THRESHOLD_METRICS,
            f"--threshold-metric must be {' or '.join(THRESHOLD_METRICS)} "
            f"(got {str(self.threshold_metric)[:40]!r})",
        )
        _check(
            self.threshold != "auto" or d.val > 0,
            "--threshold auto is chosen on a validation split: add --val, for example "
            "--train 0.6 --val 0.2",
        )
        class_weight_pairs(t.class_weight)
        _check(
            not self.calibrate or d.val > 0,
            "--calibrate is fitted on a validation split: add --val, for example "
            "--train 0.6 --val 0.2",
        )
        _check(
            t.folds == 0 or 2 <= t.folds <= MAX_FOLDS,
            f"--folds must be 0 (off) or from 2 to {MAX_FOLDS} (got {t.folds})",
        )
        _check(
            1 <= t.repeats <= MAX_FOLDS,
            f"--repeats must be from 1 to {MAX_FOLDS} (got {t.repeats})",
        )
        _check(
            t.seed + t.repeats <= 2**63,
            f"--seed {t.seed} leaves no room for --repeats {t.repeats}: use a smaller --seed",
        )
        _check(
            t.device in DEVICES, f"unknown device '{t.device}': use --device {' or '.join(DEVICES)}"
        )
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The config as TOML text that `from_toml` and `torchwork run --config` accept."""
        lines = []
        top = {k: v for k, v in self.to_dict().items() if not isinstance(v, dict)}
        for key, value in top.items():
            lines.append(f"{key} = {_toml_value(value)}")
        for section in ("data", "model", "train"):
            lines.append(f"\n[{section}]")
            for key, value in dataclasses.asdict(getattr(self, section)).items():
                lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_dict(
        cls, raw: dict[str, Any], source: str = "config", base: RunConfig | None = None
    ) -> RunConfig:
        """Build a config from nested plain values, refusing unknown keys and wrong types.

        Keys not in `raw` keep their value from `base` (default: the defaults).
        """
        return _from_dict(cls, raw, source, "", base if base is not None else cls())

    @classmethod
    def layered(
        cls,
        file: dict[str, Any] | None = None,
        overrides: dict[str, Any] | None = None,
        source: str = "config",
    ) -> RunConfig:
        """Defaults, then the table defaults when a table is read, then `file` (nested, as
        from TOML), then `overrides` ({"train.lr": 0.1, ...}, as from flags). A table run
        that asks for a validation split also gets early stopping unless patience was set.
        """
        file = file or {}
        overrides = overrides or {}
        given = set(overrides)
        for key, value in file.items():
            given |= {f"{key}.{k}" for k in value} if isinstance(value, dict) else {key}
        data = file.get("data")
        path = overrides.get("data.path", data.get("path", "") if isinstance(data, dict) else "")
        config = cls()
        folder = folder_kind(path) if path and is_folder(path) else ""
        table = bool(path) and not folder
        defaults = FOLDER_DEFAULTS.get(folder, {}) if folder else TABLE_DEFAULTS if table else {}
        for name, value in defaults.items():
            config.set(name, value)
        config = cls.from_dict(file, source, base=config)
        for name, value in overrides.items():
            config.set(name, coerce(value, field_hint(*split_name(name)), name))
        kind = registry.MODELS.get(config.model.kind)
        if "model.hidden" not in given and kind is not None:
            config.model.hidden = list(kind.hidden)  # tinyvgg's 10 channels, cnn's widths
        if folder:
            for name, value in kind.defaults if kind is not None else ():
                if name not in given:  # a model's own (TinyVGG: a constant rate)
                    config.set(name, value)
            if not config.data.val and "train.patience" not in given:
                config.train.patience = 0  # --val 0: nothing to stop early on
            return config
        if table and not given & {"data.train", "data.val", "train.patience"}:
            # The split is chosen once the table is read (choose_split): an mlp's on its
            # rows, a table with text held out for early stopping.
            config.data.split_by_rows = True
        if table and config.model.kind == "mlp" and not given & {"data.train", "data.val"}:
            # An MLP can fit a table's noise: hold out validation rows and stop early on
            # them, as scikit-learn's MLP does with early_stopping=True.
            held = _hold_out(config.data, MLP_SPLIT[1])
            config.data.split_by_rows = True  # choose_split: more validation rows on few rows
            if "train.patience" not in given and held:
                config.train.patience = MLP_PATIENCE
        if (
            table
            and config.data.val > 0
            and "train.patience" not in given
            and not config.train.patience
        ):
            # TABLE_VAL_PATIENCE, unless the model trains by L-BFGS (choose_training)
            config.train.patience = AUTO
        if table and "train.epochs" in given and "train.tol" not in given:
            config.train.tol = 0.0  # --epochs N given: train exactly N epochs
        return config

    def set(self, name: str, value: Any) -> None:
        """Set one field by dotted name, e.g. config.set("train.lr", 0.1)."""
        section, key = split_name(name)
        setattr(getattr(self, section) if section else self, key, value)

    @classmethod
    def from_toml(cls, text: str, source: str = "config") -> RunConfig:
        return cls.from_dict(parse_toml(text, source), source)

    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        return cls.from_dict(read_toml(path), str(path))

    def to_file(self, path: str | Path) -> None:
        from torchwork.fileio import write_text_atomic

        write_text_atomic(path, self.to_toml())


MIN_IMAGE_SIZE = 8  # pixels a side: smaller is no picture to learn from
MAX_IMAGE_SIZE = 1024


# ...and when it reads a folder of class folders: the defaults of the kind of its files
# (registry.KINDS' `folder`), then those of the model it names (registry.MODELS' `defaults`).
FOLDER_DEFAULTS: dict[str, dict[str, Any]] = {
    name: dict(entry.folder) for name, entry in registry.KINDS.items() if entry.folder
}


def is_folder(path: str | Path) -> bool:
    """Whether a run's --data names a folder of class folders rather than a table."""
    return Path(path).is_dir()


def folder_kind(folder: str | Path) -> str:
    """The kind of data a folder holds: the kind (registry.KINDS) whose files it holds the
    most of ("image" for a folder of pictures with a notes.txt); the first kind that reads
    files when it holds none (reading it then says what was looked for)."""
    readers = {name: entry for name, entry in registry.KINDS.items() if entry.suffixes}
    counts = dict.fromkeys(readers, 0)
    for _, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__MACOSX"]
        for name in names:
            suffix = os.path.splitext(name)[1].lower()
            for kind, entry in readers.items():
                if suffix in entry.suffixes and not name.startswith("."):
                    counts[kind] += 1
    return max(counts, key=counts.__getitem__) if any(counts.values()) else next(iter(readers))


def choose_split(config: RunConfig, rows: int, kinds: list[str] | tuple[str, ...] = ()) -> str:
    """The split of a table whose flags left it to the data (data.split_by_rows), in place:
    an mlp's on `rows`; a table with a column of a kind that trains on minibatches (text:
    registry.KINDS' `training`) holds out validation rows and stops early on them. Returns
    why it was changed, or "" when it was not."""
    d, t = config.data, config.train
    if not d.split_by_rows:
        return ""
    d.split_by_rows = False  # chosen: the config now says what was used
    order = sorted(set(kinds), key=list(registry.KINDS).index, reverse=True)
    stops = [name for name in order if dict(registry.KINDS[name].training).get("patience")]
    if config.model.kind != "mlp" and stops and _hold_out(d, MLP_SPLIT[1]):
        if t.patience in (0, AUTO):
            t.patience = dict(registry.KINDS[stops[0]].training)["patience"]
        return (
            f"   Chosen for this data: --train {d.train:g} --val {d.val:g} --patience "
            f"{t.patience} (a {stops[0]} column: validation rows to stop early on)"
        )
    if config.model.kind != "mlp" or rows >= MLP_SMALL_ROWS:
        return ""
    if not _hold_out(d, MLP_SMALL_SPLIT[1]):
        return ""
    return (
        f"   Chosen for this data: --train {d.train:g} --val {d.val:g} (an mlp on {rows} rows: "
        "enough validation rows to stop early on)"
    )


def _hold_out(d: DataConfig, val: float) -> bool:
    """Hold out `val` of the rows for validation, the training rows the rest beside the test
    split (--test as given): whether there was room."""
    train = round(1 - val - d.test, 10)
    if train <= 0:
        return False
    d.train, d.val = train, val
    return True


def choose_training(
    config: RunConfig, train_rows: int, kinds: list[str] | tuple[str, ...] = ()
) -> dict[str, str]:
    """Replace the `auto` training settings by the ones this model and data get, in place;
    returns, for each setting chosen, why.

    A linear model reaches its optimum in a few full-batch L-BFGS iterations, and runs to it:
    patience auto (--val) stops early only what trains otherwise. An MLP on many rows
    converges in a few passes of minibatches with Adam, and in hundreds of full-batch epochs
    without them. A kind of column that trains its own way (registry.KINDS' `training`: text,
    on minibatches with sparse gradients) sets the autos it names. (--l2-c auto is chosen
    once the model is built: workflow.train.choose_l2_c.)
    """
    t = config.train
    why = {}
    for name in sorted(set(kinds), key=list(registry.KINDS).index, reverse=True):
        for key, value in registry.KINDS[name].training:
            if key != "patience" and getattr(t, key) == AUTO:
                setattr(t, key, value)
                why[key] = f"a {name} column"
    mlp = config.model.kind == "mlp"
    if t.optimizer == AUTO:
        if mlp:
            t.optimizer, why["optimizer"] = "adam", "an mlp: Adam"
        elif t.batch_size not in (0, AUTO):
            t.optimizer, why["optimizer"] = "adam", "a linear model on minibatches: Adam"
        else:
            t.optimizer = "lbfgs"
            why["optimizer"] = "a linear model: L-BFGS reaches its optimum in a few passes"
    if t.batch_size == AUTO:
        size = auto_batch_size(train_rows) if mlp and t.optimizer != "lbfgs" else 0
        t.batch_size = size
        why["batch_size"] = (
            f"an mlp on {train_rows} training rows: {-(-train_rows // size)} steps an epoch"
            if size
            else "full batch"
        )
    if t.lr == AUTO:
        kind = (
            "lbfgs"
            if t.optimizer == "lbfgs"
            else "mlp minibatches"
            if mlp and t.batch_size
            else "otherwise"
        )
        t.lr = AUTO_LR[kind]
        if kind == "mlp minibatches":
            # Adam's best step grows about with the square root of the batch size.
            t.lr = float(f"{t.lr * math.sqrt(t.batch_size / AUTO_BATCH_SIZE):.2g}")
        why["lr"] = {
            "lbfgs": "L-BFGS takes whole steps; its line search shortens them",
            "mlp minibatches": f"Adam on batches of {t.batch_size}",
            "otherwise": "Adam or SGD",
        }[kind]
    if t.tol == AUTO:
        t.tol = AUTO_TOL["lbfgs" if t.optimizer == "lbfgs" else "otherwise"]
    if t.patience == AUTO:
        lbfgs = config.model.kind == "linear" and t.optimizer == "lbfgs"
        t.patience = 0 if lbfgs or not config.data.val else TABLE_VAL_PATIENCE
        if lbfgs:
            why["patience"] = (
                "a linear model: L-BFGS runs to convergence, as stopping it early leaves it "
                "far from the optimum"
            )
    return why


def auto_batch_size(train_rows: int) -> int:
    """An mlp's minibatch size: the largest power of two from 32 to AUTO_BATCH_SIZE that
    leaves at least AUTO_STEPS steps an epoch (32 where none does); 0, the full batch, for
    fewer than 64 rows."""
    if train_rows < 64:
        return 0
    size = 32
    while size * 2 <= AUTO_BATCH_SIZE and size * 2 * AUTO_STEPS <= train_rows:
        size *= 2
    return size


def parse_toml(text: str, source: str = "config") -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source} is not valid TOML: {e}") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """The plain values of a TOML file, with a clear error when it cannot be read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    return parse_toml(text, str(path))


def _known_encoding(name: str) -> bool:
    import codecs

    try:
        return codecs.lookup(name)._is_text_encoding  # rot13 or zlib are codecs, not encodings
    except (LookupError, ValueError):  # ValueError: a name with a NUL character
        return False


def config_kinds(pairs: list[str]) -> list[tuple[str, str]]:
    """--kind's column=kind pairs, each kind one of registry.KINDS; a ConfigError naming the
    right syntax for anything else, before data is read."""
    found = []
    for pair in pairs:
        column, sep, kind = pair.rpartition("=")
        if not sep or not column.strip() or kind.strip() not in registry.KINDS:
            raise ConfigError(
                f"--kind takes column=kind pairs such as review=text, the kind one of "
                f"{', '.join(registry.KINDS)} (got {shown(pair)})"
            )
        found.append((column.strip(), kind.strip()))
    return found


def class_weight_pairs(spec: str) -> dict[str, float]:
    """--class-weight's label=weight pairs ({} for "" and "balanced"); a ConfigError naming
    the right syntax for anything else, before data is read."""
    if spec in ("", "balanced"):
        return {}
    pairs = {}
    for part in spec.split(","):
        label, sep, value = part.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not label.strip() or not (math.isfinite(number) and number > 0):
            raise ConfigError(
                "--class-weight must be balanced or label=weight pairs such as yes=3,no=1 "
                f"with weights above 0 (got {spec[:60]!r})"
            )
        pairs[label.strip()] = number
    return pairs


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


MAX_MESSAGE = 300  # characters of an error message about a stored config: one short line


def stored_config(raw: Any, source: str) -> RunConfig:
    """The run config kept in a model file or checkpoint, held to the limits `run` holds its
    own config to, so that no command rebuilds from a file what `run` would refuse (a line
    of a billion rows, an MLP of a thousand layers).

    >>> stored_config({"data": {"step": 1e-9}}, "model.safetensors")  # doctest: +SKIP
    TorchworkError: model.safetensors holds a config that torchwork run would refuse: ...
    """
    try:
        return RunConfig.from_dict(raw, "the stored config").validate(stored=True)
    except TorchworkError as e:
        # A file's text: no line breaks or terminal escapes in a one-line error.
        message = " ".join(str(e).split())
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + "..."
        raise ConfigError(
            f"{source} holds a config that torchwork run would refuse: {message}"
        ) from None


def shown(value: Any, limit: int = 60) -> str:
    """A value for an error message, cut short: a list from a file can be long."""
    text = repr(value)
    if len(text) <= limit:
        return text
    count = f"{len(value):,} values" if isinstance(value, list) else f"{len(text):,} characters"
    return f"{text[:limit]}... ({count})"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes (newline, \\uXXXX, ...) are valid in TOML basic strings.
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def split_name(name: str) -> tuple[str, str]:
    section, _, key = name.rpartition(".")
    return section, key


def _from_dict(cls: type, raw: Any, source: str, prefix: str, base: Any) -> Any:
    where = f"[{prefix}] of {source}" if prefix else source
    if not isinstance(raw, dict):
        raise ConfigError(f"'{prefix}' in {source} must be a table such as [{prefix}]")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(f"unknown key '{key}' in {where}: known keys are {', '.join(fields)}")
        hint = hints[key]
        name = f"{prefix}.{key}" if prefix else key
        if dataclasses.is_dataclass(hint):
            values[key] = _from_dict(hint, value, source, name, getattr(base, key))
        else:
            values[key] = coerce(value, hint, f"'{name}' in {source}")
    return dataclasses.replace(base, **values)


def coerce(value: Any, hint: Any, what: str) -> Any:
    """Check a plain value against a config field's type, converting int to float."""
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        if type(value) is not hint:
            raise ConfigError(f"{what} must be {_type_name(hint)} (got {value!r})")
        return value
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{what} must be a list of {_type_name(item)} (got {value!r})")
        return [coerce(v, item, what) for v in value]
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            if option is type(None) and value is None:
                return None
            try:
                return coerce(value, option, what)
            except TorchworkError:
                pass
        raise ConfigError(f"{what} has the wrong type (got {value!r})")
    raise TypeError(f"unsupported config type {hint}")


def _type_name(hint: Any) -> str:
    return {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, str(hint)
    )


def field_hint(section: str, key: str) -> Any:
    """The type of config field `section.key` ('' section for top-level fields)."""
    cls = typing.get_type_hints(RunConfig)[section] if section else RunConfig
    return typing.get_type_hints(cls)[key]
