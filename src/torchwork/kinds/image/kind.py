"""Pictures: a column of image file names (relative to the table's folder), or a folder of
class folders, which stands for the table (file, label). Each picture is decoded once into
uint8 pixels [channels, size, size] (read.py), augmented a batch at a time in training
(augment.py), and goes through a small CNN or the course's TinyVGG (layers.py), whose pooled
features join the other columns' in the model's first layer."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from torchwork import registry
from torchwork.config import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from torchwork.errors import DataError
from torchwork.kinds.base import (
    Block,
    Decoded,
    Kind,
    Source,
    TrainingRows,
    graph_name,
    malformed,
    named_file,
    names_files,
    picture_name,
    say_dropped,
    short,
)
from torchwork.kinds.image.layers import TRUNKS, check_trunk, picture_layer, pixel_statistics
from torchwork.tables import arrow
from torchwork.tables.check import is_text

SUFFIXES = registry.KINDS["image"].suffixes
RESIZE = "squeeze"  # the whole picture resized to a square, not cropped (read.py)
FILTER = "bilinear"  # Pillow's antialiased bilinear filter
MEDIA_TYPES = (  # what a server takes as one picture's body: the formats read.py decodes
    "image/jpeg",
    "image/png",
    "image/bmp",
    "image/gif",
    "image/webp",
    "image/tiff",
    "application/octet-stream",
)
PREDICTIONS_PICTURE = "test_predictions.png"  # the test pictures with their labels (plots/)


@dataclass
class ImageBlock(Block):
    """One column of pictures: the size and channels they are decoded to, and the layer
    (trunk and widths) they go through."""

    kind = "image"
    image_size: int = 64
    channels: int = 3  # 3: RGB; 1: grey
    trunk: str = "cnn"  # cnn or tinyvgg (layers.py)
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])
    augments = True
    suffixes = SUFFIXES
    media_types = MEDIA_TYPES

    @property
    def column(self) -> str:
        return self.columns[0]

    @property
    def mode(self) -> str:
        return "RGB" if self.channels == 3 else "L"

    def decode(self, table: pa.Table, where: Source) -> Decoded:
        return decode_column(table, self.column, self.image_size, self.channels, where)

    def encode(
        self,
        table: pa.Table,
        where: Source,
        decoded: dict[str, Any] | None = None,
        order: np.ndarray | None = None,
    ) -> torch.Tensor:
        if decoded is None or self.column not in decoded:
            table, decoded, _ = self.decode(table, where)
        images = decoded[self.column]
        if order is None:
            return images
        if len(order) == len(images) and np.array_equal(order, np.arange(len(order))):
            return images  # already in split order: no copy
        return images[torch.from_numpy(np.asarray(order))]

    def from_json(self, column: str, values: list[Any], where: Source) -> pa.Array:
        """Pictures in a request: each one's file bytes in base64 (a server opens no path)."""
        out = []
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise DataError(
                    f"column '{column}' of {where.name} must hold a picture's bytes in base64; "
                    f"row {i + 1} has {short(value)}"
                )
            try:
                out.append(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                raise DataError(
                    f"column '{column}' of {where.name} has text in row {i + 1} that is not "
                    "base64: send each picture's file bytes base64-encoded"
                ) from None
        return pa.array(out, pa.binary())

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "channels": self.channels,
            "image_size": self.image_size,
            "trunk": self.trunk,
            "widths": list(self.widths),
        }

    def prime(self, layer: nn.Module, X_train: torch.Tensor) -> None:
        layer.normalize.set(*pixel_statistics(X_train))

    def augment(self, x: torch.Tensor, generator: torch.Generator, how: str) -> torch.Tensor:
        from torchwork.kinds.image.augment import augment

        return augment(x, how, generator)

    def input_names(self) -> list[str]:
        with torch.device("meta"):
            features = picture_layer(
                self.channels, self.image_size, self.trunk, self.widths
            ).features_out
        return [f"{self.column}[{j}]" for j in range(features)]

    def describe(self) -> str:
        grey = "grey" if self.channels == 1 else "RGB"
        layer = "TinyVGG" if self.trunk == "tinyvgg" else "CNN"
        return (
            f"pictures '{self.column}': {self.image_size}x{self.image_size} {grey}, "
            f"through a {layer} of {', '.join(map(str, self.widths))} channels"
        )

    def untested(self) -> str:
        size = self.image_size
        return (
            f"pictures unlike the training pictures of '{self.column}' (other subjects, framing, "
            f"light): any picture is resized to {size}x{size} and read as they were"
        )

    def draw(
        self,
        folder: Path,
        x_test: torch.Tensor,
        y_test: torch.Tensor,
        decoded: Any,
        labels: list[Any],
    ) -> None:
        if "index" not in decoded:  # a regression: no labels to show
            return
        from torchwork.plots import plot_image_predictions

        plot_image_predictions(
            x_test,
            y_test,
            decoded["index"],
            decoded["probabilities"],
            labels,
            path=folder / picture_name(PREDICTIONS_PICTURE, self.column),
        )

    def describe_input(self) -> dict[str, Any]:
        return {"input": "image", "image_size": self.image_size, "channels": self.channels}

    def export_input(self) -> dict[str, Any]:
        name = graph_name("pixels", self.column)
        size = self.image_size
        return {
            "name": name,
            "dtype": "uint8",
            "shape": ["batch", self.channels, size, size],
            "column": self.column,
            "preprocess": self.reading(),
            "how": f"the pictures of '{self.column}' as uint8 pixels NCHW, 0 to 255: each "
            "upright by its EXIF orientation, transparency laid on white, converted to "
            f"{self.mode}, and resized whole to {size}x{size} (squeezed, not cropped) with "
            "Pillow's bilinear filter; the graph normalises them itself",
        }

    def reading(self) -> dict[str, Any]:
        """How a picture becomes this block's pixels, for a program outside torchwork."""
        return {
            "image_size": self.image_size,
            "channels": self.channels,
            "mode": self.mode,
            "resize": RESIZE,
            "filter": FILTER,
            "input": "uint8 NCHW pixels; the model normalises them itself",
        }

    def example(self, rows: int, generator: torch.Generator) -> torch.Tensor:
        shape = (rows, self.channels, self.image_size, self.image_size)
        return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "columns": list(self.columns)} | self.spec() | self.reading()


class ImageKind(Kind):
    name = "image"

    def accepts(self, column: pa.ChunkedArray) -> str | None:
        return None if is_text(column.type) else f"holds {column.type} values, not file names"

    def recognise(self, column: pa.ChunkedArray, name: str, where: Source) -> str | None:
        return "names of picture files" if names_files(column, SUFFIXES) else None

    def decode(self, table: pa.Table, columns: list[str], where: Source, options: Any) -> Decoded:
        from torchwork.kinds.image.read import choose_size

        decoded: dict[str, Any] = {}
        kept = None
        for column in columns:
            if options.image_size:
                size, why = options.image_size, "--image-size"
            else:
                paths = _paths(table.column(column), column, where)
                size, why = choose_size(paths)
                why = f"auto: {why}; --image-size to change"
            table, values, rows = decode_column(table, column, size, options.channels, where)
            if rows is not None:  # the rows an earlier column decoded, less these
                decoded = {k: v[torch.from_numpy(rows)] for k, v in decoded.items()}
                kept = rows if kept is None else kept[rows]
            decoded |= values
            mode = "RGB" if options.channels == 3 else "grey"
            where.say(f"   Pictures '{column}': {size}x{size} {mode} ({why})")
        return table, decoded, kept

    def fit(
        self,
        table: pa.Table,
        columns: list[str],
        train: TrainingRows,
        options: Any,
        where: Source,
        left_out: list[tuple[str, str, str]],
        decoded: dict[str, Any],
    ) -> list[Block]:
        trunk = options.model if options.model in TRUNKS else "cnn"
        widths = list(options.hidden) if options.model in TRUNKS else list(_default_widths())
        blocks: list[Block] = []
        for column in columns:
            size = int(decoded[column].shape[-1])
            problem = check_trunk(trunk, options.channels, widths, size)
            if problem:
                raise DataError(problem)
            blocks.append(ImageBlock([column], size, options.channels, trunk, widths))
        return blocks

    def from_dict(self, raw: dict[str, Any]) -> Block:
        columns = raw.get("columns")
        if not (isinstance(columns, list) and len(columns) == 1 and isinstance(columns[0], str)):
            raise malformed("a picture block names one column")
        problem = self.check_spec(raw)
        if problem:
            raise malformed(problem)
        return ImageBlock(
            list(columns), raw["image_size"], raw["channels"], raw["trunk"], list(raw["widths"])
        )

    def layer(self, spec: dict[str, Any], width: int) -> nn.Module:
        return picture_layer(spec["channels"], spec["image_size"], spec["trunk"], spec["widths"])

    def spec_words(self, spec: dict[str, Any]) -> str:
        side = spec["image_size"]
        return f"{'grey' if spec['channels'] == 1 else 'RGB'} images of {side}x{side}"

    def spec_for(
        self, model: str, in_features: int, hidden: list[int], image_size: int
    ) -> dict[str, Any]:
        return ImageBlock(["file"], image_size, in_features, model, list(hidden)).spec()

    def check_spec(self, spec: dict[str, Any]) -> str:
        size, channels = spec.get("image_size"), spec.get("channels")
        trunk, widths = spec.get("trunk"), spec.get("widths")
        if isinstance(size, bool) or not isinstance(size, int):
            return f"a picture block of image_size {size!r:.40}"
        if not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
            return f"image_size must be {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} (got {size})"
        if isinstance(channels, bool) or channels not in (1, 3):
            return f"channels must be 1 or 3 (got {channels!r:.40})"
        if not isinstance(trunk, str) or not isinstance(widths, list) or len(widths) > 100:
            return f"a picture block of layer {trunk!r:.40} and widths {widths!r:.60}"
        return check_trunk(trunk, channels, widths, size)


KIND = ImageKind()


def decode_column(table: pa.Table, column: str, size: int, channels: int, where: Source) -> Decoded:
    """A column of pictures decoded: each row's file (relative to `where.root`) or sent bytes,
    into uint8 [rows, channels, size, size]. A file that cannot be used is an error that
    names it, or with `where.skip_bad` its row is dropped (and said)."""
    from torchwork.kinds.image.read import decode, decode_bytes

    values = table.column(column)
    if pa.types.is_binary(values.type):  # pictures sent to a server, checked one by one
        pictures = []
        for i, data in enumerate(values.to_pylist()):
            try:
                pictures.append(decode_bytes(data or b"", size, channels, where.max_pixels))
            except DataError as e:
                if len(values) == 1:
                    raise
                named = f"the picture in row {i + 1} of '{column}'"
                raise DataError(str(e).replace("the image", named, 1)) from None
        return table, {column: torch.cat(pictures)}, None
    decoded = decode(_paths(values, column, where), size, channels, skip_bad=where.skip_bad)
    say_dropped(where, [(bad.path, bad.reason) for bad in decoded.bad])
    if not decoded.bad:
        return table, {column: decoded.images}, None
    kept = np.asarray(decoded.kept, dtype=np.int64)
    if not len(kept):
        raise DataError(f"no picture of column '{column}' of {where.name} can be read")
    return table.take(arrow.from_numpy(kept)), {column: decoded.images}, kept


def _paths(values: pa.ChunkedArray, column: str, where: Source) -> list[Path]:
    """The files a column of picture names names, each inside the table's folder."""
    if not is_text(values.type):
        raise DataError(
            f"column '{column}' of {where.name} holds {values.type} values, not names of picture "
            "files"
        )
    what = "pictures (each one's bytes, base64 in JSON)" if where.root is None else "pictures"
    return [named_file(v, column, i, where, what) for i, v in enumerate(values.to_pylist())]


def _default_widths() -> tuple[int, ...]:
    return registry.MODELS["cnn"].hidden
