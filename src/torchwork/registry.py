"""The choices a run is made of, each in one place: every loss, optimizer and model kind by
its name, with the class that is built for it.

A new loss, optimizer or model is one line here (and its class where the others are); the
config's checks, the command line's choices and help, and the code that builds them all
read these tables. An entry names its class as "module:attribute" and imports it on first
use: the command line reads the names without importing torch, so `torchwork --help` stays
fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

Task = Literal["regression", "binary", "multiclass"]  # what a model's outputs mean
MODEL_TASKS: tuple[Task, ...] = get_args(Task)


@dataclass(frozen=True)
class Entry:
    target: str  # "module:attribute" of the class (or function) built for this name
    tasks: tuple[Task, ...] = ("regression", "binary", "multiclass")  # what it can be used for
    help: str = ""
    options: tuple[str, ...] = ()  # optimizers: the settings its class takes besides lr
    line: tuple[str, str] | None = None  # models: the state_dict keys of a line's weight, bias
    needs: str = ""  # models: the kind of column whose layer the model is (image)
    columns: bool = True  # models: it learns from a table's columns (the line's model_0 not)
    hidden: tuple[int, ...] = (64, 64)  # models: the --hidden sizes when none are given
    suffixes: tuple[str, ...] = ()  # kinds: the files it reads (lower case), by suffix
    noun: str = ""  # kinds: what a folder of its files holds, for messages ("images")
    # kinds: the training settings left `auto` that a column of it sets (config.choose_training)
    training: tuple[tuple[str, Any], ...] = ()
    # kinds: the defaults of a folder of its files ("section.key", value), as RunConfig.layered
    # applies them; models: their own defaults over those (a folder's run)
    folder: tuple[tuple[str, Any], ...] = ()
    defaults: tuple[tuple[str, Any], ...] = ()
    # kinds: the settings ("section.key") that apply where a column is of this kind (the
    # report and the card show them only then)
    settings: tuple[str, ...] = ()

    def load(self) -> Any:
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)


LOSSES: dict[str, Entry] = {
    "l1": Entry("torch.nn:L1Loss", ("regression",), "mean absolute error, the course's"),
    "mse": Entry("torch.nn:MSELoss", ("regression",), "mean squared error"),
    "huber": Entry("torch.nn:HuberLoss", ("regression",), "squared near 0, absolute far"),
    "bce": Entry("torch.nn:BCEWithLogitsLoss", ("binary",), "binary cross-entropy on logits"),
    "ce": Entry("torch.nn:CrossEntropyLoss", ("multiclass",), "cross-entropy on logits"),
}
AUTO_LOSS: dict[Task, str] = {"regression": "mse", "binary": "bce", "multiclass": "ce"}

OPTIMIZERS: dict[str, Entry] = {
    "sgd": Entry("torch.optim:SGD", options=("momentum", "foreach"), help="the course's"),
    "adam": Entry("torch.optim:Adam", options=("fused",)),
    "adamw": Entry("torch.optim:AdamW", options=("fused",), help="Adam, decoupled weight decay"),
    "lbfgs": Entry("torchwork.optim:LBFGS", help="L-BFGS, strong-Wolfe line search, full batch"),
}

MODELS: dict[str, Entry] = {
    "params": Entry(
        "torchwork.models:build_params",
        ("regression",),
        "the course's model_0",
        line=("weights", "bias"),
        columns=False,
    ),
    "linear": Entry(
        "torchwork.models:build_linear",
        help="nn.Linear over every input",
        line=("linear_layer.weight", "linear_layer.bias"),
    ),
    "mlp": Entry("torchwork.models:build_mlp", help="ReLU hidden layers, --hidden sizes"),
    "tinyvgg": Entry(
        "torchwork.models:build_tinyvgg",
        ("binary", "multiclass"),
        "images: the course's TinyVGG, --hidden channels",
        needs="image",
        hidden=(10,),
        # TinyVGG learns slowly: a constant learning rate for all its epochs, as the course
        # trains it. Test accuracy on 1,500 synthetic photos of 10 shapes (benchmarks/
        # images.py), mean over seeds 0 to 4, 30 epochs: cosine with patience 8 0.761, cosine
        # without early stopping 0.789, constant without early stopping 0.836 (the CNN: 0.974
        # with cosine and patience 8, 0.972 without early stopping, seeds 0 to 2).
        defaults=(("train.schedule", "none"), ("train.patience", 0)),
    ),
    "cnn": Entry(
        "torchwork.models:build_cnn",
        ("binary", "multiclass"),
        "images: conv-batchnorm blocks of --hidden widths, global pooling",
        needs="image",
        hidden=(16, 32, 64),
    ),
}


# The kinds of data a table's columns may hold, each one module under torchwork.kinds (its
# `KIND`), in the order their blocks come in a model's inputs. A column is recognised by the
# last kind here that claims it: the more specific kinds are listed later. `suffixes`: the
# files a kind reads from a folder of class folders, or from a column naming them; `training`:
# the settings left auto that a table with such a column gets (the later kind's first).
KINDS: dict[str, Entry] = {
    "number": Entry("torchwork.kinds.number:KIND", help="numbers, standardized"),
    "category": Entry("torchwork.kinds.category:KIND", help="text of a few distinct values"),
    "text": Entry(
        "torchwork.kinds.text.kind:KIND",
        help="free text: a column of documents, or .txt files",
        suffixes=(".txt",),
        noun="text files",
        settings=("data.encoding",),  # of its files, in a folder as in a table
        training=(("optimizer", "adam"), ("batch_size", 64), ("lr", 0.01), ("patience", 2)),
        # a folder of them: the bag of n-grams with a linear head, Adam (SparseAdam for the
        # bag) on minibatches, a validation split to stop early on
        folder=(
            ("data.shuffle", True),  # the split is stratified by class, and seeded
            ("data.train", 0.7),
            ("data.val", 0.1),
            ("data.test", 0.2),
            ("model.kind", "linear"),
            ("train.loss", "auto"),
            ("train.optimizer", "adam"),
            ("train.lr", 0.01),
            ("train.batch_size", 64),
            ("train.epochs", 100),  # the upper bound: early stopping ends it
            ("train.patience", 2),
        ),
    ),
    "image": Entry(
        "torchwork.kinds.image.kind:KIND",
        help="pictures: files named by a column, or a folder of class folders",
        suffixes=(".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"),
        noun="images",
        settings=("data.image_size", "data.channels", "data.augment"),
        training=(("optimizer", "adamw"), ("batch_size", 64), ("lr", 0.003), ("patience", 8)),
        # a folder of them: a small CNN, minibatches, augmentation, a validation split to stop
        # early on, and a learning rate that decays to 0 over the epochs
        folder=(
            ("data.shuffle", True),  # the split is stratified by class, and seeded
            ("data.train", 0.7),
            ("data.val", 0.1),  # of the images that are not test images: early stopping
            ("data.test", 0.2),
            ("model.kind", "cnn"),
            ("train.loss", "auto"),  # BCEWithLogits for two classes, CrossEntropy for more
            ("train.optimizer", "adamw"),
            ("train.lr", 0.003),
            ("train.batch_size", 64),
            ("train.epochs", 30),
            ("train.patience", 8),
            ("train.schedule", "cosine"),
        ),
    ),
    "date": Entry("torchwork.kinds.date:KIND", help="dates and times, as year, month, ... numbers"),
}


def learned_line(learned: Mapping[str, Any]) -> tuple[float, float] | None:
    """(weight, bias) when `learned` (each parameter's values as a flat list, as in
    summary.json) is a line: a params or linear model of one input and one output; else None."""
    for entry in MODELS.values():
        if entry.line is not None and set(learned) == set(entry.line):
            weight, bias = (learned[key] for key in entry.line)
            if all(isinstance(v, list | tuple) and len(v) == 1 for v in (weight, bias)):
                return float(weight[0]), float(bias[0])
    return None
