"""Reading images: the class folders of a folder found (find_images), and every image decoded
once with Pillow, in parallel, into one uint8 tensor held in memory (decode), so that
training never decodes again.

Two layouts are read. One sub-folder per class (torchvision's `ImageFolder` convention), which
the run splits itself; or `train/` and `test/` (and optionally `val/`), each holding class
folders, used as given (the course's `pizza_steak_sushi`). A class is a folder's name, and
classes are sorted by name, as torchvision sorts them, so that labels match its numbering.

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
import itertools
import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Literal, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from torchwork.config import MIN_IMAGE_SIZE, SPLITS  # SPLITS: the split folders, in order
from torchwork.errors import ConfigError, DataError

# The files read as images, by suffix (any case); others (and hidden files) are ignored.
IMAGE_SUFFIXES = [".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"]
# The Pillow formats a file may hold, whatever its suffix says (a PNG named .jpg is read).
# Naming them keeps Pillow from handing a renamed file to a plugin that runs an outside
# program (EPS and Ghostscript). JPEG includes MPO, the JPEG that many cameras write.
FORMATS = ["JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF"]
ALL = "all"  # the one split of the classes layout, which the run splits itself
DEFAULT_SIZE = 64  # the course's TinyVGG takes 64 x 64
_IGNORED_FOLDERS = {"__MACOSX"}  # what macOS adds to a zip file, not a class
_SIXTEEN_BIT = ("I", "I;16", "I;16L", "I;16B", "I;16N")
_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA")


@dataclass(frozen=True)
class ImageFolder:
    """The images found in a folder: its layout, the classes, and the files of each split."""

    root: Path
    layout: Literal["classes", "splits"]  # class folders in root, or train/ test/ [val/]
    classes: tuple[str, ...]  # sorted by name; a label is an index into them
    folders: dict[str, Path]  # split ("all" in the classes layout) -> the folder it is in
    files: dict[str, tuple[Path, ...]]  # split -> its images, by class, then by name
    labels: dict[str, tuple[int, ...]]  # split -> the class of each of its files

    @property
    def splits(self) -> tuple[str, ...]:
        """("all",), or ("train", "test") with "val" between them when there is one."""
        return tuple(self.files)

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each split; a class a split does not have counts 0."""
        result = {}
        for split, labels in self.labels.items():
            per_class = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(self.classes))
            result[split] = {name: int(n) for name, n in zip(self.classes, per_class, strict=True)}
        return result

    def without(self, dropped: Iterable[str | Path]) -> ImageFolder:
        """This folder without the files that decode dropped (skip_bad), to label and count
        what was kept. A class left with no images in train/ (or in the classes layout),
        or a split left empty, is an error: there would be nothing to learn or test it on."""
        gone = {Path(p) for p in dropped}
        files, labels = {}, {}
        for split in self.splits:
            kept = [
                (f, y)
                for f, y in zip(self.files[split], self.labels[split], strict=True)
                if f not in gone
            ]
            files[split] = tuple(f for f, _ in kept)
            labels[split] = tuple(y for _, y in kept)
        first = self.splits[0]
        left = set(labels[first])
        for k, name in enumerate(self.classes):
            if k not in left:
                raise DataError(
                    f"every image in {self.folders[first] / name} was dropped as unusable: "
                    "add images that can be read, or remove the folder"
                )
        for split in self.splits[1:]:
            if not files[split]:
                raise DataError(
                    f"every image in {self.folders[split]} was dropped as unusable: "
                    "add images that can be read"
                )
        return replace(self, files=files, labels=labels)


def find_images(folder: str | Path) -> ImageFolder:
    """The images of `folder`, in one of the two layouts (see the module's docstring).

    Hidden files and folders, files without an image suffix, and loose files next to the
    class folders are ignored; a class folder's sub-folders are searched too. In the splits
    layout, train/ names the classes: a class that test/ or val/ lacks is fine, one that only
    they have is an error. train/ without test/ is an error too, rather than a guess that
    "train" is a class: move the class folders up to let the run split them itself.
    """
    root = Path(folder)
    if not root.exists():
        raise DataError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{root} is a file: give a folder with one sub-folder of images per class")
    folders = _subfolders(root)
    splits = {f.name.lower(): f for f in folders if f.name.lower() in SPLITS}
    if not splits:
        if not folders:
            loose = len(_images_in(root, deep=False))
            found = f" (its {loose} images are not in class folders)" if loose else ""
            raise DataError(
                f"{root} has no class folders{found}: put the images in one sub-folder per "
                f"class ({root / 'cat'}/1.jpg, {root / 'dog'}/2.jpg)"
            )
        by_class = _by_class(folders)
        _check_train(root, by_class)
        return _image_folder(root, "classes", {ALL: root}, {ALL: by_class})
    others = [f.name for f in folders if f.name.lower() not in SPLITS]
    if others:
        raise DataError(
            f"{root} holds split folders ({', '.join(f.name for f in splits.values())}) and "
            f"other folders ({_some(others)}): keep only train/, test/ and val/ in it, or only "
            "class folders"
        )
    if "train" not in splits:
        raise DataError(
            f"{root} has {'/ and '.join(splits)}/ but no train/: add train/ with one sub-folder "
            "of images per class"
        )
    if "test" not in splits:
        raise DataError(
            f"{root} has {'/ and '.join(splits)}/ but no test/: add test/ with the same class "
            f"folders, or move the class folders up into {root} to let the run split them"
        )
    train = _by_class(_subfolders(splits["train"]))
    if not train:
        raise DataError(f"{splits['train']} has no class folders: add one sub-folder per class")
    _check_train(splits["train"], train)
    found = {"train": train}
    for split in ("val", "test"):
        if split not in splits:
            continue
        where = splits[split]
        by_class = _by_class(_subfolders(where))
        if not by_class:
            raise DataError(
                f"{where} has no class folders: give it those of {splits['train']} "
                f"({_some(list(train))})"
            )
        extra = [name for name in by_class if name not in train]
        if extra:
            raise DataError(
                f"class {extra[0]} is in {where} but not in {splits['train']}: add "
                f"{splits['train'] / extra[0]}, or remove {where / extra[0]}"
            )
        _check_images(where, by_class)
        found[split] = by_class
    ordered = {split: splits[split] for split in SPLITS if split in found}
    return _image_folder(root, "splits", ordered, {split: found[split] for split in ordered})


def summary(folder: ImageFolder, dropped: int = 0) -> str:
    """One line for the run to print: the images found per class (and per split), e.g.
    "photos/: 3 classes, 120 images: cat 40, dog 50, fox 30"."""
    counts = folder.counts
    total = sum(len(files) for files in folder.files.values())
    head = f"{folder.root}/: {len(folder.classes)} classes, {total:,} images"
    if folder.layout == "classes":
        line = f"{head}: {_per_class(counts[ALL])}"
    else:
        parts = [
            f"{split} {len(folder.files[split]):,} ({_per_class(counts[split])})"
            for split in folder.splits
        ]
        line = f"{head}: {', '.join(parts)}"
    if dropped:
        line += f"; {dropped:,} unusable file{'s' if dropped != 1 else ''} dropped (--skip-bad)"
    return line


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
    paths: Sequence[str | Path],
    size: int = DEFAULT_SIZE,
    channels: int = 3,
    skip_bad: bool = False,
    workers: int | None = None,
    min_size: int = MIN_IMAGE_SIZE,
    max_pixels: int | None = None,
) -> Decoded:
    """Decode `paths` into one uint8 tensor [N, channels, size, size], in parallel.

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
            reasons[i] = _decode_one(Path(paths[i]), pixels[i], size, min_size, limit)
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
            f"image {paths[first]} {reasons[first]}: replace or remove it, or pass "
            "--skip-bad to drop such files"
        )
    kept = [i for i, reason in enumerate(reasons) if reason is None]
    for j, i in enumerate(kept):  # close the gaps in place (j <= i): no second tensor
        if i != j:
            pixels[j] = pixels[i]
    bad = [BadImage(Path(paths[i]), reasons[i] or "") for i in bad_at]
    return Decoded(images[: len(kept)], kept, bad)


def list_images(path: str | Path) -> tuple[Path, list[Path]]:
    """The images to predict: (the folder they are named relative to, the files): one image
    file as given, or every image in a folder and its sub-folders, sorted by path."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist: give an image file or a folder of images")
    if path.is_file():
        return path.parent, [path]
    files = _images_in(path)
    if not files:
        raise DataError(
            f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)}): give an image file or a "
            "folder of images"
        )
    return path, files


def decode_bytes(
    data: bytes, size: int, channels: int = 3, max_pixels: int | None = None
) -> torch.Tensor:
    """One image file's bytes (an upload) as uint8 [1, channels, size, size], read exactly as
    `decode` reads files; a DataError says what is wrong with it."""
    import io

    into = np.empty((channels, size, size), dtype=np.uint8)
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        reason = _decode_one(io.BytesIO(data), into, size, MIN_IMAGE_SIZE, limit)
    if reason is not None:
        raise DataError(f"the image {reason}")
    return torch.from_numpy(into).unsqueeze(0)


def _decode_one(
    path: Path | IO[bytes], into: np.ndarray, size: int, min_size: int, limit: int | None
) -> str | None:
    """Decode one file (or open file) into `into` [channels, size, size]; what is wrong with
    it, or None."""
    try:
        with Image.open(path, formats=FORMATS) as img:  # reads the header only
            width, height = img.size
            if limit is not None and width * height > limit:
                return (
                    f"is {width}x{height} = {width * height:,} pixels, over the limit of "
                    f"{limit:,} (a decompression bomb?)"
                )
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
        return (
            f"has more than twice Pillow's limit of {Image.MAX_IMAGE_PIXELS:,} pixels "
            "(a decompression bomb?)"
        )
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


def _subfolders(folder: Path) -> list[Path]:
    """The folders in `folder` that may be classes or splits, sorted by name."""
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as e:
        raise DataError(f"cannot list {folder}: {e.strerror or e}") from None
    return [
        p
        for p in entries
        if p.is_dir() and not p.name.startswith(".") and p.name not in _IGNORED_FOLDERS
    ]


def _images_in(folder: Path, deep: bool = True) -> list[Path]:
    """The image files in `folder` (and its sub-folders, if deep), sorted by their path."""

    def unlistable(e: OSError) -> None:
        raise DataError(f"cannot list {e.filename}: {e.strerror or e}")

    found = []
    for top, dirs, names in os.walk(folder, onerror=unlistable):
        dirs[:] = [d for d in dirs if not d.startswith(".")] if deep else []
        found += [
            Path(top, name)
            for name in names
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
        ]
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def _by_class(folders: list[Path]) -> dict[str, list[Path]]:
    return {f.name: _images_in(f) for f in folders}


def _check_images(where: Path, by_class: dict[str, list[Path]]) -> None:
    """Every class folder holds an image."""
    suffixes = " ".join(IMAGE_SUFFIXES)
    if not any(by_class.values()):
        raise DataError(
            f"{where} has no images ({suffixes}) in its class folders: add some to each"
        )
    for name, files in by_class.items():
        if not files:
            raise DataError(
                f"class folder {where / name} has no images ({suffixes}): add some, or remove "
                "the folder"
            )


def _check_train(where: Path, by_class: dict[str, list[Path]]) -> None:
    """The classes to learn: images in each, and at least two."""
    _check_images(where, by_class)
    if len(by_class) == 1:
        raise DataError(
            f"{where} has one class folder ({next(iter(by_class))}): a classifier needs at "
            "least two, one sub-folder of images per class"
        )


def _image_folder(
    root: Path,
    layout: Literal["classes", "splits"],
    folders: dict[str, Path],
    found: dict[str, dict[str, list[Path]]],
) -> ImageFolder:
    classes = tuple(found[next(iter(found))])  # those of train/ (or all), sorted
    index = {name: k for k, name in enumerate(classes)}
    files = {
        split: tuple(f for fs in by_class.values() for f in fs) for split, by_class in found.items()
    }
    labels = {
        split: tuple(index[name] for name, fs in by_class.items() for _ in fs)
        for split, by_class in found.items()
    }
    return ImageFolder(root, layout, classes, folders, files, labels)


def _per_class(counts: dict[str, int]) -> str:
    """ "cat 40, dog 50"; for many classes, the smallest and the largest."""
    if len(counts) <= 12:
        return ", ".join(f"{name} {n:,}" for name, n in counts.items())
    fewest = min(counts, key=counts.__getitem__)
    most = max(counts, key=counts.__getitem__)
    return f"{counts[fewest]:,} ({fewest}) to {counts[most]:,} ({most}) per class"


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
