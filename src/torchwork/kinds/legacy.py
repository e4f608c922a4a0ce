"""Model files written before the kinds of data (preprocessing format 1): their preprocessing
and weights read as this version's, in one place, so that the rest of the code knows one
layout.

Format 1 stored a table's encoder as a list of features, numeric or categorical (one-hot:
one model input per category, in the features' order), and an image model's as
{"kind": "images", ...}. Format 2 stores blocks, one per kind of column, and the model's
description lists them (`blocks`); a category's one-hot weights became rows of its block's
embedding.
"""

from __future__ import annotations

from typing import Any

import torch

from torchwork.errors import DataError

FORMAT = 2  # the layout this version writes (kinds.encoder.Encoder.to_dict)
PICTURE_MODELS = ("cnn", "tinyvgg")  # format 1: a model class of its own for each
_TARGET_FIELDS = (
    "target",
    "task",
    "labels",
    "target_mean",
    "target_std",
    "interval",
    "temperature",
    "threshold",
)


IMAGES = "images"  # the "kind" of a format-1 image model's preprocessing


def upgrade_preprocess(raw: dict[str, Any], spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """A stored preprocessing of any format, in format 2 (a format-1 image model's needs its
    model description `spec` for the layer its pictures go through)."""
    if not isinstance(raw, dict):
        raise DataError("the stored preprocessing is malformed: it is not a JSON object")
    if "blocks" in raw:
        return raw
    if raw.get("kind") == IMAGES:
        return _upgrade_images(raw, spec or {})
    try:
        features = raw["features"]
        numbers = [f for f in features if f["kind"] == "numeric"]
        categories = [f for f in features if f["kind"] == "categorical"]
        if len(numbers) + len(categories) < len(features):
            unknown = next(f["kind"] for f in features if f not in numbers + categories)
            raise DataError(
                f"the stored preprocessing is malformed: a feature has unknown kind {unknown!r:.40}"
            )
        blocks = []
        if numbers:
            blocks.append(
                {
                    "kind": "number",
                    "columns": [f["name"] for f in numbers],
                    "mean": [f.get("mean", 0.0) for f in numbers],
                    "std": [f.get("std", 1.0) for f in numbers],
                }
            )
        if categories:
            blocks.append(
                {
                    "kind": "category",
                    "columns": [f["name"] for f in categories],
                    "categories": [f.get("categories") for f in categories],
                    "other": [f.get("other", False) for f in categories],
                }
            )
        names = [f["name"] for f in features]
    except (KeyError, TypeError) as e:
        raise DataError(f"the stored preprocessing is incomplete or malformed: {e}") from None
    upgraded = {"format": FORMAT, "features": names, "blocks": blocks}
    return upgraded | {k: raw[k] for k in _TARGET_FIELDS if k in raw}


def _upgrade_images(raw: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """A format-1 image model's preprocessing: one column of pictures, `file`, and the class
    names as the labels of `label`."""
    block = {
        "kind": "image",
        "columns": ["file"],
        "image_size": raw.get("image_size"),
        "channels": raw.get("channels"),
        "trunk": spec.get("kind", "cnn"),
        "widths": spec.get("hidden", [16, 32, 64]),
    }
    upgraded = {"format": FORMAT, "features": ["file"], "blocks": [block], "target": "label"}
    return upgraded | {
        k: raw[k] for k in ("task", "labels", "temperature", "threshold") if k in raw
    }


def upgrade_spec(spec: dict[str, Any], preprocess: dict[str, Any] | None) -> dict[str, Any]:
    """A stored model description of any format: with its blocks where its preprocessing
    (format 1) says what they are, or, for a picture model, where its own fields do."""
    if not isinstance(spec, dict) or "blocks" in spec:
        return spec
    if spec.get("kind") in PICTURE_MODELS:
        block = {
            "kind": "image",
            "channels": spec.get("in_features"),
            "image_size": spec.get("image_size"),
            "trunk": spec["kind"],
            "widths": spec.get("hidden"),
        }
        upgraded = {k: v for k, v in spec.items() if k not in ("image_size", "hidden")}
        return upgraded | {"hidden": [], "blocks": [block]}
    if not preprocess:
        return spec
    if "blocks" in preprocess or "features" not in preprocess:
        return spec
    upgraded = upgrade_preprocess(preprocess)
    blocks = []
    for block in upgraded["blocks"]:
        if block["kind"] == "number":
            blocks.append({"kind": "number", "columns": len(block["columns"])})
        else:
            sizes = [
                len(c or []) + bool(o)
                for c, o in zip(block["categories"], block["other"], strict=True)
            ]
            blocks.append({"kind": "category", "sizes": sizes})
    task = spec.get("task", preprocess.get("task", "regression"))
    return {**spec, "task": task, "blocks": blocks}


def upgrade_state(
    spec: dict[str, Any], state: dict[str, torch.Tensor], preprocess: dict[str, Any] | None
) -> dict[str, torch.Tensor]:
    """The weights of a model file of any format, as the model its upgraded description
    (`upgrade_spec`) describes: a format-1 table model's one-hot weight columns become its
    category block's embedding rows."""
    if not isinstance(spec, dict) or "blocks" in spec:
        return state
    if spec.get("kind") in PICTURE_MODELS:
        return _upgrade_picture_state(state)
    if not preprocess or "blocks" in preprocess or "features" not in preprocess:
        return state
    features = preprocess["features"]
    key = "linear_layer.weight" if spec.get("kind") == "linear" else "layers.0.weight"
    weight = state.get(key)
    widths = [
        1 if f["kind"] == "numeric" else len(f["categories"]) + bool(f.get("other"))
        for f in features
    ]
    if weight is None or weight.dim() != 2 or weight.shape[1] != sum(widths):
        return state  # checked against the description, which says what is wrong
    starts = [sum(widths[:i]) for i in range(len(widths))]
    numeric = [starts[i] for i, f in enumerate(features) if f["kind"] == "numeric"]
    one_hot = [
        j
        for i, f in enumerate(features)
        if f["kind"] != "numeric"
        for j in range(starts[i], starts[i] + widths[i])
    ]
    if not one_hot:
        return state
    upgraded = dict(state)
    upgraded[key] = weight[:, numeric].contiguous()
    category_block = 1 if numeric else 0
    upgraded[f"blocks.{category_block}.weight"] = weight[:, one_hot].t().contiguous()
    return upgraded


def _upgrade_picture_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A format-1 CNN's or TinyVGG's weights as the TabularModel of one column of pictures:
    the picture layer's under blocks.0, the last linear layer (the head) as its first layer."""
    heads = ("head.2.", "classifier.1.")
    upgraded = {}
    for key, tensor in state.items():
        head = next((h for h in heads if key.startswith(h)), None)
        upgraded[f"linear_layer.{key[len(head) :]}" if head else f"blocks.0.{key}"] = tensor
    return upgraded
