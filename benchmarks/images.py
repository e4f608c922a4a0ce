"""torchwork on folders of images against the torchvision script a practitioner writes, and
against scikit-learn's SVC on the digits, side by side in one run.

    python benchmarks/images.py [--sets digits,photos] [--epochs 3] [--size 64]
                                [--classes 10] [--per-class 150] [--model cnn|tinyvgg]
                                [--hidden 16,32,64] [--photo-side 256]
                                [--repeats 3] [--no-accuracy] [--cache DIR] [--runs DIR]
                                [--out FILE]

Two folders of class sub-folders, written once into --cache (default: a folder under the
system's temporary folder) and reused by later runs:
- digits: scikit-learn's `load_digits`, 1,797 8x8 grey pictures, each a PNG (grey 0..16 scaled
  to 0..255) in a folder named by its digit; torchwork's automatic image size makes them
  16x16, and both tools use that size;
- photos: --classes x --per-class JPEGs of 256x256 (default 10 x 150), made here with Pillow
  and numpy from a fixed seed: a shape whose kind and colour give the class (with jittered
  colour, size, place and turn), on a random two-colour gradient with a few grey distractor
  shapes and Gaussian noise; read at --size (64) a side. Here decoding costs more than
  training a step does.

Three tables:
1. Decoding: images per second of torchwork's `find_images` + `decode(paths, size=S,
   channels=3)` (Pillow in threads, into one uint8 tensor, a JPEG decoded at a reduced
   scale where that still leaves S pixels: Pillow's draft) against a torchvision
   `ImageFolder(root, Compose([Resize((S, S)), ToTensor()]))` iterated once by a
   `DataLoader(batch_size=64, num_workers=2)`; the median of --repeats timings taken in
   turns, after one untimed round. Also the mean absolute difference of the pixels (0..255).
2. Training for --epochs (default 3, to keep the whole script near 5 minutes on 2 cores):
   `torchwork run --data FOLDER --image-size S --epochs E --no-plots`, called as the library
   (`run(RunConfig.layered(overrides=...))`), against the hand-written loop: ImageFolder with
   `RandomHorizontalFlip, Resize((S, S)), ToTensor, Normalize` (ImageNet's means and standard
   deviations, as tutorials use them) and a `DataLoader(batch_size=64, shuffle=True,
   num_workers=2)`, the same model from `build_model("cnn", in_features=3, out_features=K,
   hidden=H, task="multiclass", image_size=S)`, H the widths torchwork's run used (its
   default, or --hidden for both), its own normalisation layer left at mean 0, std 1, as
   Normalize has done that; AdamW (lr 0.003), CrossEntropyLoss,
   the same epochs on the same training images (torchwork's split, read from its
   predictions.csv), then one pass over the test images for their accuracy. torchwork also
   scores its validation images every epoch, augments with small shifts besides flips,
   and writes and checks its run folder; the hand-written loop does none of that.
   Each tool runs as its own process. "epoch" is the training images over one epoch's time
   (torchwork: summary.json's training seconds / epochs; by hand: the median epoch, workers
   started anew each epoch as a DataLoader does); "run" is training images x epochs over
   the whole run, from just after `import torch` to the end, in three parts: before training
   (imports, folder scan, model; torchwork also decodes every image here), training (by hand
   this decodes every image every epoch), and after (testing; torchwork also scores every
   split and writes and checks its run folder; its parts are read off the times its log
   names steps 3 and 4). The ratio is torchwork / hand-written; the target is at least 3x
   for a whole run. Peak memory is that of the whole process.
3. Accuracy on the digits: `torchwork run --data digits/` with default settings (up to 30
   epochs with early stopping; only the plots are left out) against scikit-learn's default
   `SVC()` on the 64 raw pixels / 16, fitted on torchwork's training and validation images
   and scored on its test images (the split read from predictions.csv). The target:
   torchwork's test accuracy at least SVC's - 0.01.

The last line says how much CPU other processes took while the benchmark ran (from
/proc/stat, less this script's own processes): on a shared machine, rerun when it is idle.

Setup (x86_64, Python 3.11). The benchmark has a virtual environment of its own, so that the
project's stays free of torchvision:

    python3.11 -m venv /work/bench-venv
    /work/bench-venv/bin/pip install torch==2.13.0      # the CPU build torchwork uses here
    /work/bench-venv/bin/pip download torchvision==0.28.0 --no-deps -d /tmp/tv
    /work/bench-venv/bin/pip install --no-deps /tmp/tv/torchvision-0.28.0-*.whl
    /work/bench-venv/bin/pip install numpy pillow scikit-learn pandas \\
        matplotlib safetensors pyarrow tqdm
    /work/bench-venv/bin/pip install --no-deps -e .    # torchwork, from this checkout
    /work/bench-venv/bin/python benchmarks/images.py

torchvision 0.28.0 is the release built for torch 2.13.0, but PyPI's wheel is a CUDA build:
beside the CPU torch its C++ operators (torchvision/_C.so) do not load, and `import
torchvision` fails with "operator torchvision::nms does not exist" while it registers their
fake kernels. Nothing timed here needs those operators (ImageFolder, DataLoader and the v1
transforms work on Pillow images), so on that error this script imports torchvision once more
without the module that registers them (`torchvision._meta_registrations`), and says so;
both tools then run on the same torch. The other way, `pip install torch==2.14.1
torchvision==0.29.1` (5.5 GB, a CUDA build that runs on the CPU), imports as it is, but then
torchwork runs on that torch too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import tomllib
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_medians, machine, markdown_table
from tables import measured

BATCH = 64
WORKERS = 2  # the DataLoader's worker processes, as tutorials set them
LR = 0.003
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DIGITS_SIZE = 16  # what torchwork's --image-size auto makes of 8x8 pictures
PHOTO_SIDE = 256
RUN_TARGET = 3.0  # whole-run images/s, torchwork / hand-written, at least
ACCURACY_SLACK = 0.01  # torchwork's digits accuracy, at least SVC's minus this
TORCHVISION_NOTE: list[str] = []  # how torchvision was imported, for the output


def import_torchvision() -> types.ModuleType:
    """torchvision, or a clear exit; with PyPI's CUDA wheel beside a CPU torch, imported
    without the fake-kernel registrations of its C++ operators (see the docstring)."""
    try:
        import torchvision
    except ModuleNotFoundError:
        raise SystemExit(
            f"torchvision is not installed for {sys.executable}: the hand-written loop needs "
            "it. Set up the benchmark's virtual environment as benchmarks/images.py's "
            "docstring says (torch 2.13.0, then torchvision 0.28.0 with --no-deps)."
        ) from None
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType(
            "torchvision._meta_registrations"
        )
        import torchvision

        TORCHVISION_NOTE.append(
            f"torchvision {torchvision.__version__} imported without its C++ operators "
            f"({str(e).strip()}): none is used here"
        )
    return torchvision


def cpu_seconds() -> tuple[float, float] | None:
    """(the machine's busy CPU seconds, this process's and its children's), to tell how
    much other processes ran during a measurement; None where /proc/stat is missing."""
    import resource

    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    busy = sum(int(v) for i, v in enumerate(fields[:8]) if i not in (3, 4)) / ticks
    own = sum(
        u.ru_utime + u.ru_stime
        for u in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )
    return busy, own


# The image folders -------------------------------------------------------------------------


def _finished(folder: Path, write) -> Path:
    """`folder`, written by `write(tmp)` into a sibling first, so that an interrupted run
    leaves no half-written folder behind to be taken as the data."""
    if folder.exists():
        return folder
    import shutil

    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write(partial)
    partial.rename(folder)
    return folder


def make_digits(cache: Path) -> Path:
    """scikit-learn's digits as PNG class folders: <digit>/<index>.png, grey 0..255."""
    from PIL import Image
    from sklearn.datasets import load_digits

    def write(root: Path) -> None:
        digits = load_digits()
        for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
            folder = root / str(label)
            folder.mkdir(exist_ok=True)
            pixels = np.round(image * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:04d}.png")

    return _finished(cache / "digits", write)


SHAPES = ("circle", "square", "triangle", "cross", "ring")
PALETTE = (  # one colour a class (cycled past 10 classes), jittered per picture
    (220, 40, 40), (40, 90, 220), (240, 200, 30), (40, 170, 70), (150, 60, 200),
    (250, 130, 20), (30, 190, 200), (230, 80, 170), (120, 80, 40), (240, 240, 240),
)  # fmt: skip


def make_photos(
    cache: Path, classes: int, per_class: int, seed: int = 0, side: int = PHOTO_SIDE
) -> Path:
    """`classes` x `per_class` synthetic side x side JPEGs (256 unless --photo-side): class k
    is shape k % 5 in colour k (for k < 10: each class differs from the others in shape,
    colour or both)."""
    from PIL import Image, ImageDraw

    def polygon(kind: str, cx: float, cy: float, r: float, turn: float) -> list[tuple]:
        if kind == "square":
            corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        elif kind == "triangle":
            corners = [(0, -1.2), (1.1, 0.8), (-1.1, 0.8)]
        else:  # a cross
            a, b = 0.35, 1.0
            corners = [
                (-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a),
                (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a),
            ]  # fmt: skip
        c, s = np.cos(turn), np.sin(turn)
        return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in corners]

    def draw_shape(draw, kind, cx, cy, r, turn, colour) -> None:
        if kind == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        elif kind == "ring":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=max(3, int(r / 3)))
        else:
            draw.polygon(polygon(kind, cx, cy, r, turn), fill=colour)

    def write(root: Path) -> None:
        rng = np.random.default_rng(seed)
        ramp = np.linspace(0, 1, side)
        scale = side / PHOTO_SIDE  # shapes keep their share of the picture
        for k in range(classes):
            folder = root / f"class_{k:02d}"
            folder.mkdir()
            kind, base = SHAPES[k % len(SHAPES)], np.array(PALETTE[k % len(PALETTE)])
            for i in range(per_class):
                a, b = rng.uniform(30, 200, 3), rng.uniform(30, 200, 3)
                angle = rng.uniform(0, 2 * np.pi)
                t = np.clip(
                    0.5
                    + (
                        np.cos(angle) * (ramp[None, :] - 0.5)
                        + np.sin(angle) * (ramp[:, None] - 0.5)
                    ),
                    0,
                    1,
                )
                background = a + t[..., None] * (b - a)
                img = Image.fromarray(background.astype(np.uint8))
                draw = ImageDraw.Draw(img)
                for _ in range(rng.integers(1, 4)):  # grey distractors
                    grey = int(rng.uniform(60, 200))
                    draw_shape(
                        draw, SHAPES[rng.integers(len(SHAPES))], *rng.uniform(20, side - 20, 2),
                        rng.uniform(8, 20) * scale, rng.uniform(0, np.pi), (grey, grey, grey),
                    )  # fmt: skip
                r = rng.uniform(25, 60) * scale
                cx, cy = rng.uniform(r + 5, side - r - 5, 2)
                colour = tuple(int(v) for v in np.clip(base + rng.normal(0, 20, 3), 0, 255))
                draw_shape(draw, kind, cx, cy, r, rng.uniform(0, np.pi), colour)
                pixels = np.asarray(img, dtype=np.float32) + rng.normal(0, 12, (side, side, 3))
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
                    folder / f"{i:04d}.jpg", quality=90
                )

    return _finished(cache / f"photos-{classes}x{per_class}-{side}-seed{seed}", write)


# 1. Decoding -------------------------------------------------------------------------------


def bench_decode(name: str, root: Path, size: int, repeats: int) -> list[list[str]]:
    import torch
    from torch.utils.data import DataLoader

    from torchwork import registry
    from torchwork.kinds.image.read import decode
    from torchwork.tables.folder import find_files

    torchvision = import_torchvision()
    transforms = torchvision.transforms
    suffixes = registry.KINDS["image"].suffixes

    def torchwork_decode() -> torch.Tensor:
        return decode(find_files(root, suffixes).files["all"], size=size, channels=3).images

    def torchvision_decode() -> torch.Tensor:
        dataset = torchvision.datasets.ImageFolder(
            str(root),
            transform=transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()]),
        )
        loader = DataLoader(dataset, batch_size=BATCH, num_workers=WORKERS)
        return torch.cat([x for x, _ in loader])

    ours, theirs = torchwork_decode(), torchvision_decode()
    n = len(ours)
    difference = float((ours.float() - theirs * 255).abs().mean())
    times = interleaved_medians(
        {"torchwork": torchwork_decode, "torchvision": torchvision_decode}, repeats
    )
    rows = []
    for tool, label in (
        ("torchwork", "torchwork decode (threads)"),
        ("torchvision", "torchvision ImageFolder + DataLoader"),
    ):
        rate = n / times[tool]
        rows.append(
            [
                name,
                f"{n:,}",
                f"{size}x{size}",
                label,
                f"{times[tool]:.2f} s",
                f"{rate:,.0f}",
                f"{times['torchvision'] / times[tool]:.2f}x",
                f"{difference:.2f}" if tool == "torchwork" else "-",
            ]
        )
    return rows


# 2. and 3. Training, each run as its own process -------------------------------------------


def child_torchwork(folder: str, out: str, overrides: str) -> dict:
    import torch  # noqa: F401  (the clock starts once torch is imported, as by hand)

    started = time.perf_counter()
    from torchwork import run
    from torchwork.config import RunConfig

    given = {"data.path": folder, "out": out, "plots": False, **json.loads(overrides)}
    steps: dict[str, float] = {}  # when the run's log named each step ("3. Training ...")

    def log(line: str) -> None:
        step = line.split(".", 1)[0]
        if step.isdigit() and step not in steps:
            steps[step] = time.perf_counter() - started
        print(line, file=sys.stderr)

    run_dir = run(RunConfig.layered(overrides=given), force=True, log=log)
    seconds = time.perf_counter() - started
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    return {
        "run_s": seconds,
        "train_s": summary["seconds"],
        "epochs": summary["epochs_run"],
        "train_images": summary["rows"]["train"],
        "accuracy": summary["metrics"]["test"]["accuracy"],
        "image_size": summary["data"]["columns"][0]["input"]["image_size"],
        "hidden": tomllib.loads((Path(run_dir) / "config.toml").read_text())["model"]["hidden"],
        "run_dir": str(run_dir),
        # before training (scan, decode, model), training, after (evaluate, save, files)
        "parts": (steps["3"], steps["4"] - steps["3"], seconds - steps["4"]),
    }


def child_by_hand(
    folder: str, split_file: str, epochs: str, size: str, hidden: str, kind: str = "cnn"
) -> dict:
    """The script a practitioner writes with torchvision, around torchwork's model (`kind`,
    of the `hidden` widths, a JSON list)."""
    import torch

    started = time.perf_counter()
    from torch import nn
    from torch.utils.data import DataLoader

    from torchwork.models import build_model

    torchvision = import_torchvision()
    from torchvision import datasets, transforms

    epochs, size = int(epochs), int(size)
    split = json.loads(Path(split_file).read_text())
    train_files = {str(Path(folder, f)) for f in split["train"]}
    test_files = {str(Path(folder, f)) for f in split["test"]}
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_data = datasets.ImageFolder(
        folder,
        transform=transforms.Compose(
            [
                transforms.RandomHorizontalFlip(),
                transforms.Resize((size, size)),
                transforms.ToTensor(),
                normalize,
            ]
        ),
        is_valid_file=lambda p: p in train_files,
    )
    test_data = datasets.ImageFolder(
        folder,
        transform=transforms.Compose(
            [transforms.Resize((size, size)), transforms.ToTensor(), normalize]
        ),
        is_valid_file=lambda p: p in test_files,
    )
    train_loader = DataLoader(train_data, batch_size=BATCH, shuffle=True, num_workers=WORKERS)
    test_loader = DataLoader(test_data, batch_size=BATCH, num_workers=WORKERS)
    torch.manual_seed(42)
    model = build_model(
        kind,
        in_features=3,
        out_features=len(train_data.classes),
        hidden=json.loads(hidden),
        task="multiclass",
        image_size=size,
    )
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    epoch_times = []
    before = time.perf_counter() - started
    for _epoch in range(epochs):
        epoch_started = time.perf_counter()
        model.train()
        for X, y in train_loader:
            loss = loss_fn(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        epoch_times.append(time.perf_counter() - epoch_started)
    testing = time.perf_counter()
    model.eval()
    right = 0
    with torch.inference_mode():
        for X, y in test_loader:
            right += int((model(X).argmax(1) == y).sum())
    done = time.perf_counter()
    return {
        "run_s": done - started,
        "parts": (before, testing - started - before, done - testing),
        "train_s": sum(epoch_times),
        "epoch_s": statistics.median(epoch_times),
        "epochs": epochs,
        "train_images": len(train_data),
        "accuracy": right / len(test_data),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "note": TORCHVISION_NOTE,
    }


def child_svc(predictions: str) -> dict:
    """scikit-learn's default SVC on the digits' 64 raw pixels / 16, on torchwork's split."""
    import pandas as pd
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC

    frame = pd.read_csv(predictions)
    index = frame["file"].map(lambda f: int(Path(f).stem)).to_numpy()
    digits = load_digits()
    X, y = digits.data / 16, digits.target
    labels = frame["label"].astype(str).to_numpy()
    if not (labels == y[index].astype(str)).all():
        raise SystemExit(f"{predictions}: the labels do not match the digits' own")
    fit = index[frame["split"].isin(["train", "val"]).to_numpy()]
    test = index[(frame["split"] == "test").to_numpy()]
    started = time.perf_counter()
    svc = SVC().fit(X[fit], y[fit])
    seconds = time.perf_counter() - started
    torchwork = float(
        (
            frame.loc[frame["split"] == "test", "prediction"].astype(str)
            == labels[(frame["split"] == "test").to_numpy()]
        ).mean()
    )
    return {
        "accuracy": float(svc.score(X[test], y[test])),
        "fit_s": seconds,
        "fit_rows": len(fit),
        "test_rows": len(test),
        "torchwork_from_csv": torchwork,
    }


CHILDREN = {"torchwork": child_torchwork, "by_hand": child_by_hand, "svc": child_svc}


def child(name: str, *args: str, cwd: Path) -> tuple[dict, float]:
    """(its answer, peak memory in MB) of one child process of this script."""
    _, peak, out = measured([sys.executable, __file__, "--child", name, *args], cwd)
    return json.loads(out.strip().splitlines()[-1]), peak


def split_of(run_dir: Path, file: Path) -> Path:
    """The files of each split of a torchwork run, from its predictions.csv."""
    import pandas as pd

    frame = pd.read_csv(run_dir / "predictions.csv", usecols=["file", "split"])
    split = {
        name: frame.loc[frame["split"] == name, "file"].tolist()
        for name in ("train", "val", "test")
    }
    file.write_text(json.dumps(split))
    return file


def bench_training(
    name: str,
    root: Path,
    size: int,
    epochs: int,
    hidden: list[int] | None,
    runs: Path,
    kind: str = "cnn",
) -> tuple[list[list[str]], dict]:
    given = {"train.epochs": epochs, "data.image_size": size, "model.kind": kind}
    overrides = json.dumps(given if hidden is None else {**given, "model.hidden": hidden})
    ours, our_peak = child("torchwork", str(root), str(runs / f"{name}-speed"), overrides, cwd=runs)
    split = split_of(Path(ours["run_dir"]), runs / f"{name}-split.json")
    widths = json.dumps(ours["hidden"])  # the model torchwork trained, built the same by hand
    theirs, their_peak = child(
        "by_hand", str(root), str(split), str(epochs), str(size), widths, kind, cwd=runs
    )
    if theirs["train_images"] != ours["train_images"]:
        raise SystemExit(
            f"{name}: the hand-written loop found {theirs['train_images']} training images, "
            f"torchwork {ours['train_images']}"
        )
    n = ours["train_images"]
    ours["epoch_s"] = ours["train_s"] / ours["epochs"]
    tools = {
        "torchwork run": (ours, our_peak),
        "hand-written torchvision loop": (theirs, their_peak),
    }
    rates = {
        tool: (n / r["epoch_s"], n * r["epochs"] / r["run_s"]) for tool, (r, _) in tools.items()
    }
    ratio = [a / b for a, b in zip(*rates.values(), strict=True)]
    table = []
    for tool, (r, peak) in tools.items():
        mark = tool == "torchwork run"
        table.append(
            [
                name,
                f"{size}x{size}",
                f"{n:,}",
                str(r["epochs"]),
                tool,
                f"{r['epoch_s']:.2f} s",
                f"{rates[tool][0]:,.0f}" + (f" ({ratio[0]:.2f}x)" if mark else ""),
                f"{r['run_s']:.1f} s = " + " + ".join(f"{t:.1f}" for t in r["parts"]),
                f"{rates[tool][1]:,.0f}" + (f" ({ratio[1]:.2f}x)" if mark else ""),
                f"{r['accuracy']:.4f}",
                f"{peak:.0f} MB",
            ]
        )
    return table, {
        "set": name,
        "epoch_ratio": ratio[0],
        "run_ratio": ratio[1],
        "by_hand": theirs,
        "hidden": ours["hidden"],
    }


def bench_accuracy(root: Path, runs: Path) -> tuple[list[list[str]], dict]:
    ours, _ = child("torchwork", str(root), str(runs / "digits-default"), "{}", cwd=runs)
    svc, _ = child("svc", str(Path(ours["run_dir"]) / "predictions.csv"), cwd=runs)
    if abs(svc["torchwork_from_csv"] - ours["accuracy"]) > 1e-9:
        raise SystemExit(
            f"torchwork's test accuracy is {ours['accuracy']} in summary.json but "
            f"{svc['torchwork_from_csv']} from predictions.csv"
        )
    size = ours["image_size"]
    rows = [
        [
            "torchwork run (defaults)",
            f"{size}x{size} RGB CNN {ours['hidden']}, {ours['epochs']} epochs",
            f"{ours['train_images']:,} (+ val)",
            f"{svc['test_rows']:,}",
            f"{ours['run_s']:.1f} s",
            f"{ours['accuracy']:.4f}",
        ],
        [
            "scikit-learn SVC()",
            "64 raw pixels / 16, RBF kernel",
            f"{svc['fit_rows']:,} (train + val)",
            f"{svc['test_rows']:,}",
            f"{svc['fit_s']:.2f} s (fit)",
            f"{svc['accuracy']:.4f}",
        ],
    ]
    return rows, {"torchwork": ours["accuracy"], "svc": svc["accuracy"]}


# The whole benchmark -----------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(CHILDREN[sys.argv[2]](*sys.argv[3:])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="digits,photos", help="digits, photos or both")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the speed runs")
    parser.add_argument("--size", type=int, default=64, help="the photos' side in pixels")
    parser.add_argument(
        "--photo-side",
        type=int,
        default=PHOTO_SIDE,
        help="the side of the photo files written (a camera's are 1,000 to 4,000)",
    )
    parser.add_argument("--classes", type=int, default=10, help="classes of photos")
    parser.add_argument("--per-class", type=int, default=150, help="photos of each class")
    parser.add_argument(
        "--model",
        default="cnn",
        choices=("cnn", "tinyvgg"),
        help="the model both sides train in the speed runs (cnn: torchwork's default)",
    )
    parser.add_argument(
        "--hidden",
        help="the CNN's widths for the speed runs, e.g. 32,64,128 (default: torchwork's)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed decodes of each tool")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the digits vs SVC table")
    parser.add_argument(
        "--cache",
        default=str(Path(tempfile.gettempdir()) / "torchwork-bench-images"),
        help="where the image folders are written once and reused",
    )
    parser.add_argument("--runs", help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--out", help="also write the tables to this Markdown file")
    args = parser.parse_args()
    sets = args.sets.split(",")
    hidden = [int(h) for h in args.hidden.split(",")] if args.hidden else None
    unknown = set(sets) - {"digits", "photos"}
    if unknown:
        parser.error(f"unknown --sets {', '.join(sorted(unknown))}: use digits, photos")
    torchvision = import_torchvision()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    cpu_before = cpu_seconds()
    folders = {}
    if "digits" in sets or not args.no_accuracy:
        folders["digits"] = (make_digits(cache), DIGITS_SIZE)
    if "photos" in sets:
        folders["photos"] = (
            make_photos(cache, args.classes, args.per_class, side=args.photo_side),
            args.size,
        )
    made = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as scratch:
        runs = Path(args.runs or scratch)
        runs.mkdir(parents=True, exist_ok=True)
        decoding, training, ratios = [], [], []
        for name in sets:
            root, size = folders[name]
            decoding += bench_decode(name, root, size, args.repeats)
            print(markdown_table(DECODE_HEADER, decoding[-2:]), "\n", flush=True)
        for name in sets:
            root, size = folders[name]
            rows, ratio = bench_training(name, root, size, args.epochs, hidden, runs, args.model)
            training += rows
            ratios.append(ratio)
            print(markdown_table(TRAIN_HEADER, rows), "\n", flush=True)
        accuracy = None if args.no_accuracy else bench_accuracy(folders["digits"][0], runs)
    by_hand = ratios[0]["by_hand"] if ratios else {}
    widths_from = "--hidden" if hidden else "torchwork's default"
    notes = [*TORCHVISION_NOTE, *(by_hand.get("note") or [])][:1]
    lines = [
        f"torchwork image benchmarks ({time.strftime('%Y-%m-%d')})",
        f"Machine: {machine()}, torchvision {torchvision.__version__}"
        + (f" ({notes[0]})" if notes else ""),
        f"Data in {cache} (made or found in {made:.1f} s): "
        + "; ".join(
            f"{name} {sum(1 for _ in root.rglob('*.*')):,} files"
            for name, (root, _) in folders.items()
        ),
        "",
        f"1. Decoding every image once into tensors (median of {args.repeats} in turns):",
        "",
        markdown_table(DECODE_HEADER, decoding),
        "",
        f"2. Training for {args.epochs} epoch{'s' if args.epochs != 1 else ''} (--epochs; "
        f"batches of {BATCH}, AdamW lr {LR}, "
        f"{'CNN of widths' if args.model == 'cnn' else 'TinyVGG of channels'} "
        f"{ratios[0]['hidden'] if ratios else hidden} ({widths_from}), images "
        "trained per second; (x) torchwork / hand-written:",
        "",
        markdown_table(TRAIN_HEADER, training),
        "",
    ]
    lines += [
        f"- {r['set']}: whole run {r['run_ratio']:.2f}x the hand-written loop's images/s "
        f"(target >= {RUN_TARGET:g}x: {'met' if r['run_ratio'] >= RUN_TARGET else 'NOT met'}); "
        f"one epoch {r['epoch_ratio']:.2f}x"
        for r in ratios
    ]
    if accuracy is not None:
        rows, found = accuracy
        met = found["torchwork"] >= found["svc"] - ACCURACY_SLACK
        lines += [
            "",
            "3. Test accuracy on scikit-learn's digits (the same test images):",
            "",
            markdown_table(ACCURACY_HEADER, rows),
            "",
            f"- torchwork {found['torchwork']:.4f} against SVC {found['svc']:.4f}: "
            f"{found['torchwork'] - found['svc']:+.4f} (target >= SVC - {ACCURACY_SLACK:g}: "
            f"{'met' if met else 'NOT met'})",
        ]
    seconds = time.perf_counter() - started
    lines.append(f"\nThe whole benchmark took {seconds:.0f} s.")
    cpu_after = cpu_seconds()
    if cpu_before and cpu_after:
        others = (cpu_after[0] - cpu_before[0]) - (cpu_after[1] - cpu_before[1])
        share = max(0.0, others) / (seconds * (os.cpu_count() or 1))
        lines.append(
            f"Other processes on this machine used {max(0.0, others):.0f} CPU seconds meanwhile "
            f"({share:.0%} of its {os.cpu_count()} cores)"
            + (": the timings above are disturbed by them." if share > 0.05 else ".")
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


DECODE_HEADER = [
    "set",
    "images",
    "size",
    "tool",
    "seconds",
    "images/s",
    "x torchvision",
    "mean |pixel difference|",
]
TRAIN_HEADER = [
    "set",
    "size",
    "training images",
    "epochs",
    "tool",
    "epoch",
    "images/s, one epoch",
    "run = before + training + after",
    "images/s, whole run",
    "test accuracy",
    "peak memory",
]
ACCURACY_HEADER = ["tool", "model", "fitted on", "test images", "time", "test accuracy"]


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
