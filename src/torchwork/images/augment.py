"""Augmentation on whole batches, as tensor operations: each training batch is seen with
random flips, small shifts and small turns, drawn from a seeded generator, so no image is
decoded again and every run (and every resume) draws the same.

One affine warp per image does all three at once (`affine_grid` and `grid_sample`, bilinear,
the picture's edge pixels repeated where a shift uncovers the border).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SHIFT = 0.1  # at most this fraction of the side, each way
TURN = 10.0  # at most this many degrees, each way


def augment(images: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """A batch of images (uint8 or float NCHW) as float32 pixels 0..255, warped at random:
    `kind` "flip" (a mirror image half of the time, shifts and turns), "shift" (shifts and
    turns only: for pictures that mean something else mirrored, such as digits and text) or
    "none" (the pixels unchanged)."""
    pixels = images.to(torch.float32)
    if kind == "none" or len(images) == 0:
        return pixels
    n = len(images)
    draws = torch.rand(n, 4, generator=generator).to(images.device)
    angle = (draws[:, 0] * 2 - 1) * math.radians(TURN)
    shift = (draws[:, 1:3] * 2 - 1) * (2 * SHIFT)  # grid coordinates span 2 per side
    mirror = torch.where(draws[:, 3] < 0.5, -1.0, 1.0) if kind == "flip" else torch.ones(n)
    mirror = mirror.to(images.device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # theta maps each output pixel's place to where it is read from: turn, then mirror x.
    theta = torch.stack(
        [
            torch.stack([cos * mirror, -sin, shift[:, 0]], dim=1),
            torch.stack([sin * mirror, cos, shift[:, 1]], dim=1),
        ],
        dim=1,
    )
    with torch.no_grad():
        grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
        return F.grid_sample(
            pixels, grid, mode="bilinear", padding_mode="border", align_corners=False
        )
