"""Step 5, saving and loading: safetensors with the model's description, or .pth state_dicts.

Loading never runs code from a file: safetensors holds tensors and text only, and .pth
files are read with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchwork.config import stored_config
from torchwork.errors import ModelFileError, few, one_line
from torchwork.fileio import atomic_path
from torchwork.kinds.legacy import upgrade_spec, upgrade_state
from torchwork.models import (
    build_from_spec,
    check_tensors,
    model_spec,
    spec_from_state_dict,
)

FORMAT = "torchwork"
FORMAT_VERSION = 1


def save(
    model: nn.Module,
    path: str | Path,
    config: dict[str, Any] | None = None,
    preprocess: dict[str, Any] | None = None,
) -> Path:
    """Save a model's parameters to `.safetensors` or `.pth`, atomically.

    A `.safetensors` file also stores the model's description (kind and sizes) and, when
    given, the run config and the table preprocessing (column names, scaling, categories,
    labels), as JSON metadata, so `load(path)` can rebuild it alone. A `.pth` file is the
    bare state_dict, as in the course.

    >>> save(model, "model.safetensors")  # doctest: +SKIP
    """
    from torchwork import __version__

    path = Path(path)
    suffix = path.suffix.lower()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        metadata = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "torchwork_version": __version__,
            "model": json.dumps(model_spec(model)),
        }
        if config is not None:
            metadata["config"] = json.dumps(config)
        if preprocess is not None:
            metadata["preprocess"] = json.dumps(preprocess)
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=metadata)
    elif suffix in (".pth", ".pt"):
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    else:
        raise ModelFileError(f"cannot save to {path}: use a .safetensors or .pth file name")
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata stored in a torchwork `.safetensors` file, decoded."""
    from safetensors import safe_open

    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise ModelFileError(
            f"{path} is not a readable safetensors file (corrupt or truncated?): {_reason(e)}"
        ) from None
    if raw.get("format") != FORMAT or "model" not in raw:
        raise ModelFileError(
            f"{path} is a safetensors file but not a torchwork model (no model description)"
        )
    try:
        version = int(raw.get("format_version", "0"))
    except ValueError:
        raise ModelFileError(f"{path} has an unreadable format version") from None
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written in model format {version}, newer than this torchwork reads "
            f"({FORMAT_VERSION}): upgrade torchwork"
        )
    meta: dict[str, Any] = {
        "format_version": version,
        "torchwork_version": raw.get("torchwork_version"),
    }
    try:
        meta["model"] = json.loads(raw["model"])
        meta["config"] = json.loads(raw["config"]) if "config" in raw else None
        meta["preprocess"] = json.loads(raw["preprocess"]) if "preprocess" in raw else None
    except json.JSONDecodeError:
        raise ModelFileError(f"{path} has corrupt metadata") from None
    if not isinstance(meta["model"], dict) or not isinstance(meta["preprocess"], dict | None):
        raise ModelFileError(f"{path} has corrupt metadata")
    if meta["config"] is not None:
        # Checked as `run` checks its own, whatever the command: export rebuilds the data
        # from it, inspect prints it.
        stored_config(meta["config"], str(path))
    return meta


def stored_spec(path: str | Path) -> dict[str, Any]:
    """The model description of a `.safetensors` file, with the task its stored
    preprocessing names when the description does not (files written before it did)."""
    meta = read_metadata(path)
    spec = meta["model"]
    task = (meta["preprocess"] or {}).get("task")
    if "task" not in spec and spec.get("kind") == "linear" and task in ("binary", "multiclass"):
        spec = {**spec, "task": task}
    return upgrade_spec(spec, meta["preprocess"])


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the tensors of a `.safetensors` or `.pth` file, safely, onto the CPU."""
    path = _existing(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:
            raise ModelFileError(
                f"{path} is not a readable safetensors file (corrupt or truncated?): {_reason(e)}"
            ) from None
    if suffix in (".pth", ".pt"):
        kind, contents = read_torch_file(path)
        if kind == "checkpoint":
            raise ModelFileError(
                f"{path} is a resume checkpoint, not a model file: use the run's "
                f"model.safetensors, or continue the run with torchwork run --resume {path.parent}"
            )
        return contents
    raise ModelFileError(f"cannot load {path}: use a .safetensors or .pth file")


def read_torch_file(path: str | Path) -> tuple[str, dict[str, Any]]:
    """A `.pth` or `.pt` file, read once with `torch.load(weights_only=True)`:
    ("checkpoint", its checked contents) for a resume checkpoint, else ("state_dict", its
    named tensors)."""
    path = _existing(path)
    contents = _safe_torch_load(path, "a .pth file")
    if isinstance(contents, dict) and contents.get("format") == CHECKPOINT_FORMAT:
        return "checkpoint", _checked_checkpoint(path, contents)
    return "state_dict", _checked_state_dict(path, contents)


def _checked_state_dict(path: Path, state: Any, what: str = "") -> dict[str, torch.Tensor]:
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ModelFileError(f"{path}{what} does not hold a state_dict (a dict of named tensors)")
    return state


def load(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Load a model saved by `save`, in evaluation mode.

    A `.safetensors` file is rebuilt from its stored description, once the description is
    checked against the tensors (their count, names and shapes); a `.pth` state_dict is
    loaded into `model` when given, or else into the torchwork model its keys and shapes
    describe. Keys or shapes that do not match are an error, never a silent partial load.

    >>> model = load("runs/example/model.safetensors")  # doctest: +SKIP
    """
    path = Path(path)
    spec = stored_spec(path) if path.suffix.lower() == ".safetensors" else None
    state = load_state_dict(path)
    if spec is not None:
        meta = read_metadata(path)  # a file written before the kinds of data: its weights
        state = upgrade_state(meta["model"], state, meta["preprocess"])
    if model is None:
        if spec is not None:
            check_tensors(spec, state, str(path))  # before building anything it describes
            model = build_from_spec(spec)
        else:
            model = build_from_spec(spec_from_state_dict(state))
    expected = model.state_dict()
    if state.keys() != expected.keys():
        missing = [k for k in expected if k not in state]
        extra = [k for k in state if k not in expected]
        raise ModelFileError(
            f"{path} does not match the model: missing {few(missing)}; unexpected {few(extra)}"
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ModelFileError(
                f"{path} does not match the model: '{key}' has shape {list(tensor.shape)}, "
                f"the model expects {list(expected[key].shape)}"
            )
    model.load_state_dict(state)
    model.eval()
    return model


CHECKPOINT_FORMAT = "torchwork-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, contents: dict[str, Any]) -> Path:
    """Write a resume checkpoint (tensors and plain values only) atomically."""
    from torchwork import __version__

    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "torchwork_version": __version__,
        **contents,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a resume checkpoint with `torch.load(weights_only=True)`; check its format."""
    path = _existing(path, "checkpoint")
    return _checked_checkpoint(path, _safe_torch_load(path, "a checkpoint"))


def _checked_checkpoint(path: Path, contents: Any) -> dict[str, Any]:
    if not isinstance(contents, dict) or contents.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{path} is not a torchwork checkpoint")
    version = contents.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise ModelFileError(
            f"{path} was written in checkpoint format {version}, newer than this torchwork reads "
            f"({CHECKPOINT_VERSION}): upgrade torchwork"
        )
    missing = [k for k in ("epoch", "model", "optimizer", "history", "config") if k not in contents]
    if missing:
        raise ModelFileError(f"{path} is an incomplete checkpoint: it lacks {', '.join(missing)}")
    if isinstance(contents["epoch"], bool) or not isinstance(contents["epoch"], int):
        raise ModelFileError(f"{path} is a damaged checkpoint: its epoch is not a whole number")
    _checked_state_dict(path, contents["model"], "'s model")
    stored_config(contents["config"], str(path))
    return contents


def rng_states() -> dict[str, Any]:
    """Every random generator torchwork's runs may touch, as tensors and plain values."""
    import random

    import numpy as np

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


def _safe_torch_load(path: Path, what: str) -> Any:
    try:
        with warnings.catch_warnings():
            # A refused or odd file gets our one-line error, not torch's warnings too.
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelFileError(
            f"refused to load {path}: it holds Python objects other than tensors, which could "
            "run code when loaded; only tensors and plain values are accepted"
        ) from None
    except Exception as e:
        raise ModelFileError(
            f"{path} is not readable as {what} (corrupt or truncated?): {_reason(e)}"
        ) from None


def _reason(e: Exception) -> str:
    # A library's message about a file can quote the file: its first line, cut short.
    text = str(e).strip()
    return one_line(text.splitlines()[0] if text else type(e).__name__, 200)


def _existing(path: str | Path, what: str = "model") -> Path:
    path = Path(path)
    if path.is_dir():
        names = ("model.safetensors", "model.pth") if what == "model" else ("checkpoint-last.pt",)
        inside = [n for n in names if (path / n).is_file()]
        hint = f": use {path / inside[0]}" if inside else f": give a {what} file in it"
        raise ModelFileError(f"{path} is a folder, not a {what} file{hint}")
    if not path.is_file():
        raise ModelFileError(f"{what} file {path} does not exist")
    return path
