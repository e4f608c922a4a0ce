"""The layers a picture goes through before the model's head: its normalisation (the training
pictures' mean and standard deviation per channel, stored with the weights and exported with
the graph, so the model takes plain pixels), then a small CNN or the course's TinyVGG, whose
pooled features join the other columns' in the model's first layer."""

from __future__ import annotations

import torch
from torch import nn

TRUNKS = ("cnn", "tinyvgg")  # the architectures, by the --model that names them
EVAL_IMAGES = 32  # pictures evaluated at a time: the CNN at 64 x 64 ran 1,900 images/s in
# chunks of 32, 840 in chunks of 256, whose 64 MB layers do not stay in the caches
MAX_CNN_BLOCKS = 6  # each block but the last halves the picture


class Normalize(nn.Module):
    """Pixels (uint8, or float 0..255 once augmented) to float32, standardised per channel
    with the training images' mean and standard deviation (in pixel units). The statistics
    are buffers, so they are saved with the weights and go into every exported graph."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("std", torch.ones(1, channels, 1, 1))

    def set(self, mean: list[float], std: list[float]) -> None:
        with torch.no_grad():
            self.mean.copy_(torch.tensor(mean).reshape(self.mean.shape))
            self.std.copy_(torch.tensor(std).reshape(self.std.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels-last (NHWC in memory) from here on: the CPU's convolutions, batch norm,
        # ReLU and pooling ran 1.4x faster training and 3 to 5x faster evaluating that way
        # (benchmarks/results.md): the same sums in another order, rounded differently.
        x = x.contiguous(memory_format=torch.channels_last)
        return (x.to(torch.float32) - self.mean) / self.std


class CNNFeatures(nn.Module):
    """A small CNN that learns well from a few hundred pictures without downloaded weights:
    a block of conv-batchnorm-ReLU twice per width, each block but the last halving the
    picture with max pooling, then global average pooling: `widths[-1]` features a picture,
    whatever its size."""

    adds = False
    eval_rows = EVAL_IMAGES

    def __init__(self, channels: int, widths: list[int]) -> None:
        super().__init__()
        self.normalize = Normalize(channels)
        layers: list[nn.Module] = []
        width = channels
        for i, units in enumerate(widths):
            for _ in range(2):
                layers += [
                    nn.Conv2d(width, units, kernel_size=3, padding=1, bias=False),
                    nn.BatchNorm2d(units),
                    nn.ReLU(),
                ]
                width = units
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.features_out = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(self.normalize(x)))


class TinyVGGFeatures(nn.Module):
    """The course's TinyVGG (its computer-vision chapter, after the CNN Explainer) up to its
    classifier: two blocks of conv-ReLU-conv-ReLU-maxpool with `units` channels, flattened."""

    adds = False
    eval_rows = EVAL_IMAGES

    def __init__(self, channels: int, units: int, image_size: int) -> None:
        super().__init__()
        self.normalize = Normalize(channels)

        def block(width: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(width, units, kernel_size=3, stride=1, padding=1),
                nn.ReLU(),
                nn.Conv2d(units, units, kernel_size=3, stride=1, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=2, stride=2),
            )

        self.conv_block_1 = block(channels)
        self.conv_block_2 = block(units)
        self.flatten = nn.Flatten()
        side = image_size // 4
        self.features_out = units * side * side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.conv_block_2(self.conv_block_1(self.normalize(x))))


def picture_layer(channels: int, image_size: int, trunk: str, widths: list[int]) -> nn.Module:
    """The layer of a picture block: `features_out` numbers a picture for the first layer."""
    if trunk == "tinyvgg":
        return TinyVGGFeatures(channels, widths[0], image_size)
    return CNNFeatures(channels, widths)


def check_trunk(trunk: str, channels: int, widths: list[int], image_size: int) -> str:
    """What is wrong with a picture layer's settings (a sentence with the flag to change), or ""."""
    if trunk not in TRUNKS:
        return f"unknown picture layer {trunk!r:.40}: use {' or '.join(TRUNKS)}"
    if channels not in (1, 3):
        return f"--model {trunk} takes 1 (grey) or 3 (RGB) channels, not {channels}"
    if trunk == "tinyvgg" and len(widths) != 1:
        return f"--model tinyvgg has one --hidden size, its channels (the course's 10), not {len(widths)}"
    if trunk == "cnn" and not 1 <= len(widths) <= MAX_CNN_BLOCKS:
        return f"--model cnn takes 1 to {MAX_CNN_BLOCKS} --hidden widths, one per block (got {len(widths)})"
    if not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
        return "a picture layer's widths must be whole numbers of 1 or more"
    smallest = 4 if trunk == "tinyvgg" else 2 ** (len(widths) - 1)
    if image_size < smallest:
        return (
            f"--model {trunk} with these --hidden sizes needs images of at least {smallest} "
            f"pixels a side (got --image-size {image_size}): raise --image-size"
        )
    return ""


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
