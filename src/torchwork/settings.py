"""Every setting of a run by name: the command line's flags (`--batch-size`) and the
keywords of `torchwork.run` (`batch_size=`) are the same names, each the config field it sets
(SETTINGS). `config_from` makes the checked config of `torchwork.run(config, **settings)` as
the command line makes it from flags, and says a mistake in the keywords' words.

This module imports no torch: the command line's parser reads SETTINGS.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchwork.config import (
    AUGMENTS,
    AUTO,
    CATEGORICAL,
    DEVICES,
    L2_C_WORDS,
    LOSSES,
    MODELS,
    OPTIMIZERS,
    SCHEDULES,
    TASKS,
    THRESHOLD_METRICS,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    coerce,
    field_hint,
    read_toml,
    shown,
    split_name,
)
from torchwork.errors import ConfigError

# Every setting of a run by name, as the command line's flag (--batch-size) and run's keyword
# (batch_size=) spell it, and the config field it sets: cli/parser.py's flags and
# config_from read it. A name no_X sets field X to False (--no-plots), and run
# also takes X itself (plots=False).
SETTINGS: dict[str, str] = {
    "data": "data.path",
    "image_size": "data.image_size",
    "channels": "data.channels",
    "augment": "data.augment",
    "skip_bad": "data.skip_bad",
    "target": "data.target",
    "features": "data.features",
    "exclude": "data.exclude",
    "kind": "data.kinds",
    "max_categories": "data.max_categories",
    "delimiter": "data.delimiter",
    "decimal": "data.decimal",
    "encoding": "data.encoding",
    "task": "data.task",
    "dropna": "data.dropna",
    "na_values": "data.na_values",
    "categorical": "data.categorical",
    "no_scale": "data.scale",
    "no_scale_target": "data.scale_target",
    "weight": "data.weight",
    "bias": "data.bias",
    "start": "data.start",
    "end": "data.end",
    "step": "data.step",
    "noise": "data.noise",
    "train": "data.train",
    "val": "data.val",
    "test": "data.test",
    "shuffle": "data.shuffle",
    "model": "model.kind",
    "hidden": "model.hidden",
    "loss": "train.loss",
    "optimizer": "train.optimizer",
    "lr": "train.lr",
    "momentum": "train.momentum",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "schedule": "train.schedule",
    "patience": "train.patience",
    "l2_c": "train.l2_c",
    "tol": "train.tol",
    "tol_epochs": "train.tol_epochs",
    "folds": "train.folds",
    "repeats": "train.repeats",
    "log_every": "train.log_every",
    "eval_every": "train.eval_every",
    "checkpoint_every": "train.checkpoint_every",
    "seed": "train.seed",
    "device": "train.device",
    "threads": "train.threads",
    "out": "out",
    "no_plots": "plots",
    "no_reference": "reference",
    "class_weight": "train.class_weight",
    "threshold": "threshold",
    "threshold_metric": "threshold_metric",
    "calibrate": "calibrate",
    "interval": "interval",
    "tensorboard": "tensorboard",
}
# run's keywords: the settings, and the fields that a no_ setting turns off, by their own name
KEYWORDS: dict[str, str] = {
    **SETTINGS,
    **{name[3:]: field for name, field in SETTINGS.items() if name.startswith("no_")},
}
# Flags of `torchwork run` that are no setting of a run, and what a keyword of their name
# does instead (--config and --force are run's own arguments).
_NOT_SETTINGS = {
    "resume": "to continue a run from its checkpoint, call torchwork.resume(folder)",
    "nproc": "a data-parallel run starts from a terminal: torchwork run --nproc N",
    "print_config": "torchwork.settings.config_from(...).to_toml() is the config as TOML",
}
_LIKELY = {"learning_rate": "lr", "path": "data", "file": "data", "hidden_layers": "hidden"}


def setting_name(flag: str) -> str:
    """A flag's setting, as run's keyword spells it: --batch-size is batch_size."""
    return flag.removeprefix("--").replace("-", "_")


def setting_fields(settings: dict[str, Any]) -> dict[str, Any]:
    """run's keywords as config fields ({"epochs": 100} is {"train.epochs": 100}), each value
    checked and converted as its flag's is; a ConfigError naming the keyword for an unknown
    one (with the closest name) or a value of the wrong type. None keeps the default."""
    fields: dict[str, Any] = {}
    named: dict[str, str] = {}
    for name, value in settings.items():
        if value is None:
            continue
        field = KEYWORDS.get(name)
        if field is None:
            raise ConfigError(_unknown_keyword(name))
        if field in fields:
            raise ConfigError(f"{named[field]}= and {name}= are the same setting: give one of them")
        value = _keyword_value(name, value, field_hint(*split_name(field)))
        fields[field] = not value if name in SETTINGS and name.startswith("no_") else value
        named[field] = name
    return fields


def _unknown_keyword(name: str) -> str:
    import difflib

    if name in _NOT_SETTINGS:
        return f"{name}= is no setting of a run: {_NOT_SETTINGS[name]}"
    close = difflib.get_close_matches(name, KEYWORDS, n=1, cutoff=0.6)
    best = _LIKELY.get(name) or (close[0] if close else "")
    named = shown(name, 40)
    if best:
        return (
            f"unknown setting {named}: did you mean {best}=? (the settings are the flags of "
            "torchwork run)"
        )
    return (
        f"unknown setting {named}: the settings are the flags of torchwork run, by name "
        "(--batch-size as batch_size=), such as data=, target=, epochs=, model=, lr="
    )


def _keyword_value(name: str, value: Any, hint: Any) -> Any:
    """A keyword's value as its flag's type makes it: a path as text, numbers of any numeric
    type (numpy's too) or as the flag's text, a list also as the flag's comma-separated text;
    anything else a ConfigError naming the keyword."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif item is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
            value = [value]
        elif not isinstance(value, (bytes, dict)) and hasattr(value, "__iter__"):
            value = list(value)  # a tuple, a numpy array, a pandas Index of column names
        if isinstance(value, list):
            value = [_flag_number(v, item) for v in value]
    else:
        value = _flag_number(value, hint)
    try:
        return coerce(value, hint, name)
    except ConfigError:
        wanted = _python_type(hint)
        if name == "data":  # a DataFrame, say
            wanted = "the path of a table file or a folder (save a DataFrame first: df.to_csv)"
        raise ConfigError(f"{name} must be {wanted} (got {_brief(value)})") from None


def _flag_number(value: Any, hint: Any) -> Any:
    """A number as a field of this type takes it: numpy's as Python's, text as the flag reads
    it ("100", "1e-3"); anything else as it is, for `coerce` to judge."""
    options = typing.get_args(hint) or (hint,)
    kind = int if int in options else float if float in options else None
    if kind is None or isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral) or (kind is float and isinstance(value, numbers.Real)):
        return kind(value)
    if isinstance(value, str) and value != AUTO:
        try:
            return kind(value.strip())
        except ValueError:
            return value
    return value


def _python_type(hint: Any) -> str:
    words = {int: "a whole number", float: "a number", str: "text", bool: "True or False"}
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return "whole numbers such as [64, 64]" if item is int else "names such as ['a', 'b']"
    options = [o for o in typing.get_args(hint) if o is not str]
    if options:
        return f"{words[options[0]]} or 'auto'"
    return words.get(hint, str(hint))


def _brief(value: Any) -> str:
    """A value in a one-line message: a plain one as Python writes it, cut short; anything
    else by its type (a DataFrame's text is many lines)."""
    if isinstance(value, (str, int, float, bool, list, tuple)):
        return " ".join(shown(value).split())
    return f"a {type(value).__name__}"


def _check_sections(config: RunConfig) -> None:
    """A ConfigError, saying what to write instead, for a RunConfig whose data, model or train
    is not its dataclass (RunConfig(data="iris.csv"))."""
    for section, kind in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
        value = getattr(config, section)
        if isinstance(value, kind):
            continue
        if section == "data" and isinstance(value, (str, os.PathLike)):
            path = os.fspath(value)
            instead = (
                f"to learn from a file, write torchwork.run(data={path!r}) (the command line's "
                f"defaults and checks), or RunConfig(data=DataConfig(path={path!r}))"
            )
        elif section == "model" and isinstance(value, str):
            instead = (
                f"write torchwork.run(model={value!r}), or "
                f"RunConfig(model=ModelConfig(kind={value!r}))"
            )
        else:
            instead = (
                "give the settings to torchwork.run by name, such as "
                "torchwork.run(data='iris.csv', epochs=100)"
            )
        raise ConfigError(
            f"RunConfig's {section} must be a {kind.__name__}, not {_brief(value)}: {instead}"
        )


def _in_keywords(make: Callable[[], RunConfig], keywords: bool) -> RunConfig:
    """make(), its ConfigError naming settings as run's keywords when they were given so."""
    try:
        return make()
    except ConfigError as e:
        if not keywords:
            raise
        raise ConfigError(keyword_message(str(e))) from None


_FLAG_IN_TEXT = re.compile(r"--([a-z][a-z0-9-]*[a-z0-9])( \S+)?")


def keyword_message(text: str) -> str:
    """A message that names flags, naming run's keywords instead: "--epochs must be at least
    1" is "epochs must be at least 1", "add --val 0.1" is "add val=0.1", "--calibrate needs"
    is "calibrate=True needs"."""
    values = {AUTO, "balanced", *MODELS, *LOSSES, *OPTIMIZERS, *TASKS, *DEVICES, *SCHEDULES}
    values |= {*AUGMENTS, *CATEGORICAL, *THRESHOLD_METRICS, *L2_C_WORDS}

    def keyword(match: re.Match[str]) -> str:
        name, after = setting_name(match.group(1)), match.group(2) or ""
        if name == "force":
            return f"force=True{after}"
        if name not in SETTINGS:
            return match.group(0)
        if field_hint(*split_name(SETTINGS[name])) is bool:
            return f"{name}=True{after}"
        token = after.strip()
        bare = token.rstrip(",.;:)")
        if bare and (bare in values or re.fullmatch(r"-?\.?\d[\w.,+-]*", bare)):
            return f"{name}={token}"
        return f"{name}{after}"

    return _FLAG_IN_TEXT.sub(keyword, text)


def config_from(config: RunConfig | str | Path | None = None, **settings: Any) -> RunConfig:
    """The checked config of `torchwork.run(config, **settings)`, as the command line
    makes it: each setting is the flag of that name (`--batch-size` is `batch_size=`,
    `--no-plots` is `no_plots=True` or `plots=False`; SETTINGS), its value checked and
    converted as the flag's is, layered as flags are (the defaults, a table's when `data`
    is a table, `config`, then the settings; `layered`). `config` is a TOML file, as
    `--config` reads, or a RunConfig taken as it is, the settings set over it. A
    setting given as None keeps its default.

    >>> config_from(data="iris.csv", target="species").train.loss
    'auto'
    """
    fields = setting_fields(settings)
    if isinstance(config, RunConfig):
        _check_sections(config)
        checked = RunConfig.from_dict(dataclasses.asdict(config), "the RunConfig")
        for name, value in fields.items():
            checked.set(name, value)
        return _in_keywords(checked.validate, bool(settings))
    if config is None:
        file: dict[str, Any] = {}
    elif isinstance(config, (str, os.PathLike)) and Path(config).suffix.lower() == ".toml":
        file = read_toml(config)
    elif isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        raise ConfigError(
            f"torchwork.run's first argument is a RunConfig or a .toml config file, not "
            f"{path!r}: to learn from a file, write torchwork.run(data={path!r})"
        )
    else:
        raise ConfigError(
            f"torchwork.run's first argument is a RunConfig or a .toml config file, not "
            f"{_brief(config)}: give the settings by name, such as "
            "torchwork.run(data='iris.csv', epochs=100)"
        )
    source = os.fspath(config) if config is not None else "config"
    return _in_keywords(lambda: RunConfig.layered(file, fields, source).validate(), bool(settings))
