"""Reading pictures: every image decoded once with Pillow, in parallel, into one uint8 tensor
held in memory (decode), so that training never decodes again; an upload's bytes decoded the
same way (decode_bytes).

How an image becomes pixels, the same for every file so that training and prediction agree:
- the first frame of an animated GIF, WebP or a multi-page TIFF;
- turned upright by its EXIF orientation (`ImageOps.exif_transpose`), as a viewer shows it;
- transparent pixels (RGBA, LA, a palette or PNG with transparency) laid on white, as a page
  shows them: dropping the alpha would show whatever colour transparent pixels happen to
  store, often black;
- 16-bit grey (I;16, and I as 16-bit PNGs and TIFFs open) scaled to 8 bits (v * 255 / 65535,
  rounded), not clipped; CMYK, palette and other modes by Pillow's own conversion, without
  colour profiles; float (F) images clipped to 0..255, as Pillow does;
- RGB, or grey with `channels=1` (Pillow's ITU-R 601 luma);
- resized to size x size whole, as the course's `transforms.Resize((64, 64))` does, with
  Pillow's antialiased bilinear filter (torchvision's default): a picture is squeezed rather
  than cropped, so that nothing near its edges (where the object may be) is cut away. A JPEG
  is decoded at 1/2, 1/4 or 1/8 scale where that still leaves at least size pixels a side
  (Pillow's `draft`), which makes large photos several times faster to read.
The same files always give bit-identical tensors: every step is deterministic, and each image
is written to its own place in the tensor whichever thread decodes it.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from torchwork.config import MIN_IMAGE_SIZE
from torchwork.errors import ConfigError, DataError

# The Pillow formats a file may hold, whatever its suffix says (a PNG named .jpg is read).
# Naming them keeps Pillow from handing a renamed file to a plugin that runs an outside
# program (EPS and Ghostscript). JPEG includes MPO, the JPEG that many cameras write.
FORMATS = ["JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF"]
DEFAULT_SIZE = 64  # the course's TinyVGG takes 64 x 64
_SIXTEEN_BIT = ("I", "I;16", "I;16L", "I;16B", "I;16N")
_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA")


AUTO_SIZE_FROM = 64  # image files whose sizes choose_size looks at, spread over the set
SMALL_SIDE = 16  # small pictures are enlarged to at least this: room for a CNN's pooling


def choose_size(paths: Sequence[str | Path]) -> tuple[int, str]:
    """--image-size auto: the course's 64, or for smaller pictures their typical short side
    rounded up to a multiple of 8, at least SMALL_SIDE (scikit-learn's 8x8 digits: 16), so
    that small pictures are not blown up into slow, empty detail. Reads the headers of up to
    AUTO_SIZE_FROM files, evenly spread over `paths` (always the same ones); returns the
    size and why it was chosen."""
    step = max(1, len(paths) // AUTO_SIZE_FROM)
    sides = []
    for path in list(paths)[::step][:AUTO_SIZE_FROM]:
        with contextlib.suppress(Exception), Image.open(path, formats=FORMATS) as img:
            sides.append(min(img.size))  # a bad file is named when it is decoded
    if not sides:
        return DEFAULT_SIZE, "the course's"
    typical = int(np.median(sides))
    if typical >= DEFAULT_SIZE:
        return DEFAULT_SIZE, "the course's"
    size = max(SMALL_SIDE, -(-typical // 8) * 8)
    return size, f"the pictures are about {typical} pixels a side"


class BadImage(NamedTuple):
    """A file that could not be used, and why (the words that follow its name)."""

    path: Path
    reason: str


class Decoded(NamedTuple):
    """What decode gives: the images, which of the paths they are, and the files dropped."""

    images: torch.Tensor  # uint8 [N, channels, size, size], in the order of the paths
    kept: list[int]  # the index in the paths of each image
    bad: list[BadImage]  # the files dropped with skip_bad, in the order of the paths


def decode(
    paths: Sequence[str | Path | bytes],
    size: int = DEFAULT_SIZE,
    channels: int = 3,
    skip_bad: bool = False,
    workers: int | None = None,
    min_size: int = MIN_IMAGE_SIZE,
    max_pixels: int | None = None,
) -> Decoded:
    """Decode `paths` (or files' bytes) into one uint8 tensor [N, channels, size, size], in
    parallel.

    Threads suffice: Pillow lets go of Python's lock while it decodes, converts and resizes,
    and each thread writes its images straight into the one tensor, so nothing is copied or
    gathered afterwards. `workers` defaults to the cores this process may use.

    A file that cannot be used is an error that names it: not an image, corrupt or cut
    short; more than `max_pixels` pixels (a decompression bomb: by default Pillow's own
    limit, Image.MAX_IMAGE_PIXELS, about 89 million, which Pillow only warns of); or smaller
    than `min_size` a side. It is the first such file in the order of the paths, however the
    threads ran. With `skip_bad`, such files are dropped instead, and listed in `bad`.
    """
    if channels not in (1, 3):
        raise ConfigError(f"--channels must be 1 (grey) or 3 (RGB), not {channels}")
    if size < 1:
        raise ConfigError(f"--image-size must be at least 1 pixel, not {size}")
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    n = len(paths)
    images = torch.empty((n, channels, size, size), dtype=torch.uint8)
    pixels = images.numpy()  # the same memory: what a thread writes here is in the tensor
    reasons: list[str | None] = [None] * n
    # Each thread takes the next index, so indices are handed out in order (next() on a
    # count is one step under Python's lock): when a thread stops the others at a bad file,
    # every earlier file has been decoded, and the error named is always the first.
    order = itertools.count()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            i = next(order)
            if i >= n:
                return
            source = paths[i]
            opened = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
            reasons[i] = _decode_one(opened, pixels[i], size, min_size, limit)
            if reasons[i] is not None and not skip_bad:
                stop.set()

    threads = max(1, min(workers or _cores(), n))
    try:
        with warnings.catch_warnings():
            # Pillow warns of images over its limit and decodes them; `limit` refuses them.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with ThreadPoolExecutor(threads, thread_name_prefix="torchwork-decode") as pool:
                for done in [pool.submit(work) for _ in range(threads)]:
                    done.result()
    finally:
        stop.set()  # Ctrl-C: the threads stop after the image they are on
    bad_at = [i for i, reason in enumerate(reasons) if reason is not None]
    if not bad_at:
        return Decoded(images, list(range(n)), [])
    if not skip_bad:
        first = bad_at[0]
        raise DataError(
            f"image {_named(paths[first], first)} {reasons[first]}: replace or remove it, or "
            "pass --skip-bad to drop such files"
        )
    kept = [i for i, reason in enumerate(reasons) if reason is None]
    for j, i in enumerate(kept):  # close the gaps in place (j <= i): no second tensor
        if i != j:
            pixels[j] = pixels[i]
    bad = [BadImage(_named(paths[i], i), reasons[i] or "") for i in bad_at]
    return Decoded(images[: len(kept)], kept, bad)


def decode_bytes(
    data: bytes, size: int, channels: int = 3, max_pixels: int | None = None
) -> torch.Tensor:
    """One image file's bytes (an upload) as uint8 [1, channels, size, size], read exactly as
    `decode` reads files; a DataError says what is wrong with it."""
    into = np.empty((channels, size, size), dtype=np.uint8)
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    # max_pixels is a server's own limit (serve --max-pixels): say so, and how to raise it
    whose = BOMB if max_pixels is None else SERVER_LIMIT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        reason = _decode_one(io.BytesIO(data), into, size, MIN_IMAGE_SIZE, limit, whose)
    if reason is not None:
        raise DataError(f"the image {reason}")
    return torch.from_numpy(into).unsqueeze(0)


BOMB = "the limit of {limit:,} against decompression bombs (files that expand to gigabytes)"
SERVER_LIMIT = (
    "the server's limit of {limit:,}: send a smaller picture, or start the server with "
    "--max-pixels {pixels} to take it"
)


def _decode_one(
    path: Path | IO[bytes],
    into: np.ndarray,
    size: int,
    min_size: int,
    limit: int | None,
    whose: str = BOMB,
) -> str | None:
    """Decode one file (or open file) into `into` [channels, size, size]; what is wrong with
    it, or None. `whose` says whose pixel limit `limit` is."""
    try:
        with Image.open(path, formats=FORMATS) as img:  # reads the header only
            width, height = img.size
            if limit is not None and width * height > limit:
                over = whose.format(limit=limit, pixels=width * height)
                return f"is {width}x{height} = {width * height:,} pixels, over {over}"
            if width < min_size or height < min_size:
                return f"is {width}x{height} pixels, smaller than {min_size} a side"
            img.draft(None, (size, size))  # a JPEG at 1/2, 1/4 or 1/8 scale, still >= size
            img.load()
            with contextlib.suppress(Exception):  # a broken EXIF block: kept as stored
                ImageOps.exif_transpose(img, in_place=True)
            picture = _convert(img, "L" if len(into) == 1 else "RGB")
            picture = picture.resize((size, size), Image.Resampling.BILINEAR)
            values = np.asarray(picture)
    except Image.DecompressionBombError:
        return f"has more pixels than {BOMB.format(limit=Image.MAX_IMAGE_PIXELS)}"
    except Exception as e:  # a file is bad in whatever way a Pillow plugin finds
        return f"cannot be read ({_why(e)})"
    if values.ndim == 2:
        into[0] = values
    else:
        into[:] = values.transpose(2, 0, 1)
    return None


def _convert(img: Image.Image, mode: str) -> Image.Image:
    """`img` in `mode` ("RGB" or "L"): 16-bit scaled, transparency laid on white."""
    if img.mode in _SIXTEEN_BIT:
        img = _eight_bit(img)
    elif img.mode in _ALPHA or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), rgba)
    return img if img.mode == mode else img.convert(mode)


def _eight_bit(img: Image.Image) -> Image.Image:
    """A 16-bit grey image as 8-bit grey, v * 255 / 65535 rounded: Pillow's own conversion
    clips at 255, which turns all but the darkest 16-bit pictures white."""
    values = np.asarray(img)
    if img.mode == "I":  # 32-bit: what 16-bit PNGs and TIFFs may open as
        values = np.clip(values, 0, 65535)
    scaled = (values.astype(np.uint32) * 255 + 32767) // 65535
    return Image.fromarray(scaled.astype(np.uint8))


def _named(source: str | Path | bytes, i: int) -> Path:
    """A file as a message names it; sent bytes by their place among the pictures."""
    return Path(f"number {i + 1} of those sent") if isinstance(source, bytes) else Path(source)


def _why(e: Exception) -> str:
    if isinstance(e, UnidentifiedImageError):
        return f"not a {', '.join(FORMATS)} image"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _cores() -> int:
    """The cores this process may run on (fewer than the machine's under taskset or a
    container's CPU set), where the system says."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
