"""What turns pictures into model inputs and outputs into class names, for a model of images:
the image size and channels the files are decoded to, and the classes (the folder names).

The normalisation (the training images' mean and standard deviation per channel) is not
here: it is the model's first layer (`models.Normalize`), saved with its weights and
exported with its graph, so the model takes plain pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from torchwork.config import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from torchwork.errors import DataError
from torchwork.metrics import decode_classes
from torchwork.registry import Task

KIND = "images"  # the "kind" of the stored preprocessing of an image model
RESIZE = "squeeze"  # the whole picture resized to a square, not cropped (images.read)
FILTER = "bilinear"  # Pillow's antialiased bilinear filter


@dataclass
class ImageEncoder:
    """The preprocessing of an image model, as stored with it (`to_dict`, `from_dict`)."""

    labels: list[str]  # the classes in output order: the folder names, sorted
    task: Task  # binary (two classes, one logit) or multiclass
    image_size: int  # every image is resized to image_size x image_size
    channels: int  # 3: RGB; 1: grey
    target: str = "label"  # the column that names the class, in predictions and evaluation
    temperature: float = 1.0  # --calibrate: the logits are divided by it (calibration.py)
    threshold: float = 0.5  # binary: positive at this probability or more (decision.py)

    @property
    def in_features(self) -> int:
        return self.channels

    @property
    def out_features(self) -> int:
        return 1 if self.task == "binary" else len(self.labels)

    def decode(self, outputs: torch.Tensor) -> dict[str, Any]:
        """Logits to {"index", "probabilities"}, as a table classifier's (metrics.decode_classes)."""
        return decode_classes(outputs, self.task, self.temperature, self.threshold)

    def labels_of(self, index: torch.Tensor) -> list[Any]:
        return [self.labels[i] for i in index.tolist()]

    def to_dict(self) -> dict[str, Any]:
        # The temperature (--calibrate) and threshold (--threshold) only where they were
        # set: an export's graph applies the temperature already, and a model without them
        # keeps the record it had.
        calibrated = {"temperature": self.temperature} if self.temperature != 1.0 else {}
        if self.threshold != 0.5:
            calibrated["threshold"] = self.threshold
        return calibrated | {
            "kind": KIND,
            "task": self.task,
            "labels": list(self.labels),
            "image_size": self.image_size,
            "channels": self.channels,
            "mode": "RGB" if self.channels == 3 else "L",
            "resize": RESIZE,
            "filter": FILTER,
            "input": "uint8 NCHW pixels; the model normalises them itself",
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ImageEncoder:
        """The preprocessing stored in a model file, every field checked."""
        labels, task = raw.get("labels"), raw.get("task")
        size, channels = raw.get("image_size"), raw.get("channels")
        temperature, threshold = raw.get("temperature", 1.0), raw.get("threshold", 0.5)
        if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
            problem = "labels must be a list of class names"
        elif task not in ("binary", "multiclass"):
            problem = f"an image model's task must be binary or multiclass (got {task!r:.40})"
        elif len(labels) < 2 or (task == "binary") != (len(labels) == 2):
            problem = f"a {task} model cannot have {len(labels)} classes"
        elif (
            isinstance(size, bool)
            or not isinstance(size, int)
            or not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE
        ):
            problem = f"image_size must be {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} (got {size!r:.40})"
        elif channels not in (1, 3) or isinstance(channels, bool):
            problem = f"channels must be 1 or 3 (got {channels!r:.40})"
        elif (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float))
            or not (math.isfinite(temperature) and temperature > 0)
        ):
            problem = f"temperature must be a positive number (got {temperature!r:.40})"
        elif (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not 0 < threshold < 1
            or (threshold != 0.5 and task != "binary")
        ):
            problem = (
                f"threshold must be between 0 and 1, of a binary model (got {threshold!r:.40})"
            )
        else:
            return cls(
                list(labels), task, size, channels, "label", float(temperature), float(threshold)
            )
        raise DataError(f"the stored image preprocessing is malformed: {problem}")


def pixel_statistics(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """The mean and standard deviation of each channel over `images` (uint8 NCHW), in pixel
    units, summed in float64 a few images at a time (no float copy of the set)."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for i in range(0, len(images), 256):
        part = images[i : i + 256].to(torch.float64)
        total += part.sum(dim=(0, 2, 3))
        squares += (part * part).sum(dim=(0, 2, 3))
    count = images.numel() / channels
    mean = total / count
    std = (squares / count - mean * mean).clamp(min=0).sqrt()
    return mean.tolist(), [max(s, 1.0) for s in std.tolist()]  # a blank channel: no blow-up
