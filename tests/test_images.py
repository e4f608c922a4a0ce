"""Reading images: the layouts found, every format and mode decoded to the expected pixels,
and each bad input a one-line DataError that names the file or folder."""

import time
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, features

from torchwork import registry
from torchwork.errors import ConfigError, DataError
from torchwork.kinds.image.read import decode
from torchwork.tables.folder import find_files, summary

IMAGE_SUFFIXES = list(registry.KINDS["image"].suffixes)


def find_images(root):
    """A folder of class folders of pictures, as a run finds it."""
    return find_files(root, IMAGE_SUFFIXES, "images")


def solid(path, colour=(10, 200, 30), mode="RGB", size=(16, 16), **save):
    """A one-colour image at `path` (its folders made), saved with Pillow's options `save`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path, **save)
    return path


def classes(root, counts):
    """Class folders of PNGs in `root`, {"cat": 3, ...}: image i of a class is grey i * 10."""
    for name, n in counts.items():
        for i in range(n):
            solid(root / name / f"{i:02d}.png", i * 10, "L")
    return root


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_the_suffixes():
    assert IMAGE_SUFFIXES == [".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"]


def test_finds_class_folders(tmp_path):
    root = classes(tmp_path / "photos", {"fox": 1, "cat": 3, "dog": 2})
    solid(root / "cat" / "inner" / "deep.JPG")  # sub-folders and any case of suffix
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / ".hidden.png").write_bytes(b"ignored")
    (root / "dog" / ".DS_Store").write_bytes(b"ignored")
    (root / ".git").mkdir()
    solid(root / "__MACOSX" / "cat" / "00.png")
    solid(root / "loose.png")  # next to the class folders: not in a class
    folder = find_images(root)
    assert folder.layout == "classes"
    assert folder.classes == ("cat", "dog", "fox")
    assert folder.splits == ("all",)
    cat = root / "cat"
    assert folder.files["all"][:4] == (
        cat / "00.png",
        cat / "01.png",
        cat / "02.png",
        cat / "inner" / "deep.JPG",
    )
    assert folder.labels["all"] == (0, 0, 0, 0, 1, 1, 2)
    assert folder.counts == {"all": {"cat": 4, "dog": 2, "fox": 1}}
    assert summary(folder) == f"{root}/: 3 classes, 7 images: cat 4, dog 2, fox 1"


def test_finds_train_test_and_val(tmp_path):
    root = tmp_path / "pizza_steak_sushi"
    classes(root / "train", {"pizza": 3, "steak": 2, "sushi": 2})
    classes(root / "test", {"pizza": 1, "sushi": 2})  # no steak: fine
    classes(root / "val", {"steak": 1})
    folder = find_images(root)
    assert folder.layout == "splits"
    assert folder.splits == ("train", "val", "test")
    assert folder.classes == ("pizza", "steak", "sushi")
    assert folder.labels["test"] == (0, 2, 2)  # the classes of train/, by index
    assert folder.labels["val"] == (1,)
    assert folder.counts["test"] == {"pizza": 1, "steak": 0, "sushi": 2}
    assert folder.folders["test"] == root / "test"
    assert summary(folder) == (
        f"{root}/: 3 classes, 11 images: train 7 (pizza 3, steak 2, sushi 2), "
        "val 1 (pizza 0, steak 1, sushi 0), test 3 (pizza 1, steak 0, sushi 2)"
    )
    two = find_images(classes(tmp_path / "two", {"train/a": 1, "train/b": 1, "test/a": 1}))
    assert two.splits == ("train", "test")


def test_the_summary_of_many_classes_and_of_drops(tmp_path):
    folder = find_images(classes(tmp_path / "many", {f"c{k:02d}": 1 + k % 4 for k in range(20)}))
    assert summary(folder, dropped=2) == (
        f"{tmp_path / 'many'}/: 20 classes, 50 images: 1 (c00) to 4 (c03) per class; "
        "2 unusable files dropped (--skip-bad)"
    )


@pytest.mark.parametrize(
    ("make", "where", "message"),
    [
        ({}, "missing", "does not exist"),
        ({"file.png": 1}, "file.png", "is a file"),
        ({"loose.png": 1}, "", "has no class folders (its 1 images are not in class folders)"),
        ({"cat/": 0, "dog/": 0}, "", "has no images"),
        ({"cat": 2, "dog/": 0}, "", "class folder {root}/dog has no images"),
        ({"cat": 2}, "", "has one class folder (cat): a classifier needs at least two"),
        ({"train/a": 1, "train/b": 1}, "", "has train/ but no test/"),
        ({"test/a": 1, "test/b": 1}, "", "has test/ but no train/"),
        (
            {"train/a": 1, "test/a": 1, "cats": 1},
            "",
            "holds split folders (test, train) and other folders (cats)",
        ),
        (
            {"train/a": 1, "train/b": 1, "test/c": 1},
            "",
            "class c is in {root}/test but not in {root}/train",
        ),
        ({"train/a": 1, "train/b": 1, "test/": 0}, "", "{root}/test has no class folders"),
        (
            {"train/a": 1, "train/b": 1, "test/b": 1, "test/a/": 0},
            "",
            "class folder {root}/test/a has no images",
        ),
        ({"train/a": 1, "test/a": 1}, "", "{root}/train has one class folder (a)"),
    ],
)
def test_bad_folders_are_one_line_errors(tmp_path, make, where, message):
    root = tmp_path / "set"
    root.mkdir()
    for name, n in make.items():
        if name.endswith("/"):
            (root / name).mkdir(parents=True)
        elif name.endswith(".png"):
            solid(root / name)
        else:
            classes(root, {name: n})
    with pytest.raises(DataError) as error:
        find_images(root / where if where else root)
    assert message.format(root=root) in one_line(error)
    assert str(root) in str(error.value)


def formats(folder):
    """One file of each format and mode, and the RGB pixel it must decode to (a tolerance
    for the lossy JPEG)."""
    white = (255, 255, 255)
    made = {
        "rgb.png": ((10, 200, 30), solid(folder / "rgb.png")),
        "grey.png": ((77, 77, 77), solid(folder / "grey.png", 77, "L")),
        "onebit.png": (white, solid(folder / "onebit.png", 1, "1")),
        "clear.png": (white, solid(folder / "clear.png", (255, 0, 0, 0), "RGBA")),
        "opaque.png": ((255, 0, 0), solid(folder / "opaque.png", (255, 0, 0, 255), "RGBA")),
        "half.png": ((255, 128, 128), solid(folder / "half.png", (255, 0, 0, 128), "RGBA")),
        "la.png": ((128, 128, 128), solid(folder / "la.png", (0, 128), "LA")),
        "sixteen.png": ((100, 100, 100), solid(folder / "sixteen.png", 257 * 100, "I;16")),
        "bmp.bmp": ((40, 50, 60), solid(folder / "bmp.bmp", (40, 50, 60))),
        "rgb.tif": ((1, 2, 3), solid(folder / "rgb.tif", (1, 2, 3))),
        "sixteen.tiff": ((255, 255, 255), solid(folder / "sixteen.tiff", 65535, "I;16")),
        "photo.JPG": ((10, 200, 30), solid(folder / "photo.JPG", quality=95)),
        "photo.jpeg": ((200, 10, 30), solid(folder / "photo.jpeg", (200, 10, 30), quality=95)),
        "cmyk.jpg": ((255, 0, 0), solid(folder / "cmyk.jpg", (0, 255, 255, 0), "CMYK", quality=95)),
    }
    palette = Image.new("P", (16, 16), 0)
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.save(folder / "clear_palette.png", transparency=0)  # index 0 (red) transparent
    made["clear_palette.png"] = (white, folder / "clear_palette.png")
    green = palette.copy()
    green.paste(1, (0, 0, 16, 16))
    green.save(folder / "palette.png", transparency=0)
    made["palette.png"] = ((0, 255, 0), folder / "palette.png")
    red, blue = Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 255))
    red.save(folder / "animated.gif", save_all=True, append_images=[blue], duration=100)
    assert Image.open(folder / "animated.gif").n_frames == 2
    made["animated.gif"] = ((255, 0, 0), folder / "animated.gif")
    if features.check("webp"):
        made["photo.webp"] = (
            (9, 99, 199),
            solid(folder / "photo.webp", (9, 99, 199), lossless=True),
        )
    return made


def tolerance(name: str) -> int:
    """How far a decoded pixel may be from its colour: JPEG is lossy, and half-transparent
    pixels laid on white round either way."""
    if name.lower().endswith((".jpg", ".jpeg")):
        return 4
    return 1 if name in ("half.png", "la.png") else 0


def test_every_format_and_mode_decodes_to_its_colour(tmp_path):
    made = formats(tmp_path)
    paths = [path for _, path in made.values()]
    images, kept, bad = decode(paths, size=8, workers=2)
    assert images.shape == (len(paths), 3, 8, 8) and images.dtype == torch.uint8
    assert kept == list(range(len(paths))) and bad == []
    for (name, (colour, _)), image in zip(made.items(), images, strict=True):
        expected = torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1).expand(3, 8, 8)
        difference = (image.int() - expected.int()).abs().max().item()
        assert difference <= tolerance(name), (name, image[:, 0, 0].tolist(), colour)


def test_grey_is_pillows_luma(tmp_path):
    made = formats(tmp_path)
    paths = [path for _, path in made.values()]
    grey, _, _ = decode(paths, size=8, channels=1)
    assert grey.shape == (len(paths), 1, 8, 8)
    for (name, (colour, _)), image in zip(made.items(), grey, strict=True):
        luma = Image.new("RGB", (1, 1), colour).convert("L").getpixel((0, 0))
        difference = (image.int() - luma).abs().max().item()
        assert difference <= max(tolerance(name), 1), (name, image[0, 0, 0], luma)
    rgb = solid(tmp_path / "exact.png", (10, 200, 30))
    assert decode([rgb], size=8, channels=1).images.unique().tolist() == [
        (10 * 19595 + 200 * 38470 + 30 * 7471 + 32768) >> 16
    ]


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([0, 128, 129, 257, 32767, 32896, 65278, 65535], dtype=np.uint16)
    grid = np.tile(values, (8, 1))
    Image.fromarray(grid).save(tmp_path / "ramp.png")
    assert Image.open(tmp_path / "ramp.png").mode == "I;16"
    Image.fromarray(grid.astype(np.int32) * 2 - 100).save(tmp_path / "wide.tif")  # 32-bit "I"
    assert Image.open(tmp_path / "wide.tif").mode == "I"
    images, _, _ = decode([tmp_path / "ramp.png", tmp_path / "wide.tif"], size=8, channels=1)
    expected = np.round(values.astype(float) * 255 / 65535).astype(np.uint8)
    assert images[0, 0, 0].tolist() == expected.tolist() == [0, 0, 1, 1, 127, 128, 254, 255]
    wide = np.clip(values.astype(np.int64) * 2 - 100, 0, 65535)
    assert images[1, 0, 0].tolist() == np.round(wide * 255 / 65535).astype(int).tolist()
    rgb, _, _ = decode([tmp_path / "ramp.png"], size=8)
    assert torch.equal(rgb[0], images[0].expand(3, 8, 8))


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (20, 10), (255, 0, 0))
    stored.paste((0, 0, 255), (10, 0, 20, 10))  # left red, right blue, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # show it turned a quarter clockwise: red on top
    stored.save(tmp_path / "turned.png", exif=exif)
    image = decode([tmp_path / "turned.png"], size=10).images[0]
    assert image[:, 0, 5].tolist() == [255, 0, 0]
    assert image[:, 9, 5].tolist() == [0, 0, 255]


def test_resizes_whole_to_a_square(tmp_path):
    wide = Image.new("RGB", (60, 20), (255, 0, 0))
    wide.paste((0, 0, 255), (50, 0, 60, 20))  # a blue strip at the right edge is kept
    wide.save(tmp_path / "wide.png")
    big = solid(tmp_path / "big.jpg", (10, 200, 30), size=(1200, 900), quality=95)  # draft
    images = decode([tmp_path / "wide.png", big], size=12).images
    assert images.shape == (2, 3, 12, 12)
    assert images[0, :, 6, 0].tolist() == [255, 0, 0]
    assert images[0, :, 6, 11].tolist() == [0, 0, 255]
    assert (images[1].int() - torch.tensor([10, 200, 30]).view(3, 1, 1)).abs().max() <= 4
    small = solid(tmp_path / "small.jpg", (10, 200, 30), size=(16, 16), quality=95)
    larger = decode([small], size=64).images  # smaller than size: scaled up, not drafted
    assert (larger[0].int() - torch.tensor([10, 200, 30]).view(3, 1, 1)).abs().max() <= 4


def test_decoding_is_deterministic(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        noise = rng.integers(0, 256, (37 + i, 53, 3), dtype=np.uint8)
        path = (
            tmp_path
            / f"noise{i}.{['png', 'jpg', 'webp' if features.check('webp') else 'bmp'][i % 3]}"
        )
        Image.fromarray(noise).save(path)
        paths.append(path)
    first = decode(paths, size=24, workers=2).images
    assert torch.equal(first, decode(paths, size=24, workers=2).images)
    assert torch.equal(first, decode(paths, size=24, workers=1).images)
    assert torch.equal(first[5:6], decode(paths[5:6], size=24).images)


def bad_files(folder):
    """Files that cannot be used, named like images."""
    good = solid(folder / "good.png", (1, 2, 3))
    text = folder / "text.jpg"
    text.write_text("not an image at all")
    empty = folder / "empty.png"
    empty.write_bytes(b"")
    cut = folder / "cut.png"
    cut.write_bytes(solid(folder / "whole.png", size=(64, 64)).read_bytes()[:80])
    tiny = solid(folder / "tiny.png", size=(4, 4))
    return good, {
        text: "cannot be read",
        empty: "cannot be read",
        cut: "cannot be read",
        tiny: "is 4x4 pixels, smaller than 8 a side",
    }


def test_each_bad_file_is_an_error_that_names_it(tmp_path):
    good, bad = bad_files(tmp_path)
    for path, words in bad.items():
        with pytest.raises(DataError) as error:
            decode([good, path, good])
        message = one_line(error)
        assert message.startswith(f"image {path} {words}"), message
        assert message.endswith("replace or remove it, or pass --skip-bad to drop such files")
    with pytest.raises(DataError, match="not a JPEG"):
        decode([tmp_path / "text.jpg"])
    with pytest.raises(DataError, match="missing.png cannot be read"):
        decode([tmp_path / "missing.png"])
    assert decode([tmp_path / "tiny.png"], size=4, min_size=4).images.shape == (1, 3, 4, 4)


def test_the_first_bad_file_is_named_however_the_threads_ran(tmp_path):
    good, bad = bad_files(tmp_path)
    paths = [good] * 30 + list(bad) + [good] * 30
    for _ in range(3):
        with pytest.raises(DataError, match="text.jpg"):
            decode(paths, workers=2)


def test_skip_bad_drops_and_lists_them(tmp_path):
    good, bad = bad_files(tmp_path)
    other = solid(tmp_path / "other.bmp", (7, 8, 9))
    paths = [*bad, good, tmp_path / "text.jpg", other]
    images, kept, dropped = decode(paths, size=8, skip_bad=True)
    assert kept == [4, 6]
    assert images.shape == (2, 3, 8, 8)
    assert images[0, :, 0, 0].tolist() == [1, 2, 3] and images[1, :, 0, 0].tolist() == [7, 8, 9]
    assert [b.path for b in dropped] == [*bad, tmp_path / "text.jpg"]
    assert dropped[3].reason == "is 4x4 pixels, smaller than 8 a side"
    none = decode(list(bad), skip_bad=True)
    assert none.images.shape == (0, 3, 64, 64) and none.kept == [] and len(none.bad) == 4


def test_without_the_dropped_files(tmp_path):
    root = classes(tmp_path / "set", {"a": 2, "b": 1})
    folder = find_images(root)
    kept = folder.without([root / "a" / "00.png"])
    assert kept.files["all"] == (root / "a" / "01.png", root / "b" / "00.png")
    assert kept.labels["all"] == (0, 1)
    assert summary(kept, dropped=1).endswith(": a 1, b 1; 1 unusable file dropped (--skip-bad)")
    with pytest.raises(DataError, match=f"every image in {root / 'b'} was dropped"):
        folder.without([root / "b" / "00.png"])


def test_a_decompression_bomb_is_refused(tmp_path, monkeypatch):
    good = solid(tmp_path / "good.png")
    bomb = solid(tmp_path / "bomb.png", size=(200, 100))
    with pytest.raises(DataError) as error:
        decode([good, bomb], max_pixels=10_000)
    assert one_line(error).startswith(
        f"image {bomb} is 200x100 = 20,000 pixels, over the limit of 10,000 against "
        "decompression bombs (files that expand to gigabytes)"
    )
    assert decode([good, bomb], max_pixels=10_000, skip_bad=True).kept == [0]
    # By default the limit is Pillow's, which Pillow only warns of: refused, and no warning.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 15_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match="over the limit of 15,000"):
            decode([bomb])
    # Past twice its limit, Pillow refuses it itself, whatever limit is given here.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000)
    with pytest.raises(
        DataError,
        match=r"bomb.png has more pixels than the limit of 5,000 against decompression bombs",
    ):
        decode([bomb], max_pixels=10**9)


def test_bad_settings_are_config_errors(tmp_path):
    good = solid(tmp_path / "good.png")
    with pytest.raises(ConfigError, match="--channels must be 1"):
        decode([good], channels=4)
    with pytest.raises(ConfigError, match="--image-size must be at least 1"):
        decode([good], size=0)
    assert decode([], size=8).images.shape == (0, 3, 8, 8)


def test_load_digits_as_class_folders(tmp_path):
    sklearn = pytest.importorskip("sklearn.datasets")
    digits = sklearn.load_digits()
    pixels = np.round(digits.images * 255 / 16).astype(np.uint8)  # 0..16 as 0..255
    root = tmp_path / "digits"
    for k, (image, label) in enumerate(zip(pixels, digits.target, strict=True)):
        path = root / str(label) / f"{k:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    folder = find_images(root)
    assert folder.classes == tuple(str(d) for d in range(10))
    assert sum(folder.counts["all"].values()) == 1797
    assert folder.counts["all"]["0"] == int((digits.target == 0).sum())
    start = time.perf_counter()
    images, kept, bad = decode(folder.files["all"], size=8, channels=1)
    took = time.perf_counter() - start
    assert images.shape == (1797, 1, 8, 8) and len(kept) == 1797 and bad == []
    order = [int(p.stem) for p in folder.files["all"]]  # by class, then by name
    assert torch.equal(images[:, 0], torch.from_numpy(pixels[order]))
    assert np.array_equal(np.array(folder.labels["all"]), digits.target[order])
    assert took < 20, took
    assert decode(folder.files["all"], size=32).images.shape == (1797, 3, 32, 32)


def test_the_package_imports_nothing():
    """Only a run on images pays for importing Pillow and torch."""
    import subprocess
    import sys

    code = "import sys, torchwork.kinds.image; print(sorted({'PIL', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
