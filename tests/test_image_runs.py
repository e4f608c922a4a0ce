"""`torchwork run --data FOLDER` on pictures, end to end: the quality bar on the digits, the
run folder, predict and evaluate in a new process, the folder layouts, each bad input a
one-line error that writes nothing, resume and reproducibility bit for bit, and torchrun."""

import base64
import csv
import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import assert_one_line_error, run_cli, write_digits

# Small and quick: 16 pixels a side, a narrow CNN, two epochs, no pictures.
FAST = ("--image-size", "16", "--hidden", "8,16", "--epochs", "2", "--no-plots")


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    """20 of each digit (200 images) as class folders: the absolute path of the folder."""
    return write_digits(tmp_path_factory.mktemp("digits-20") / "digits", per_class=20)


def colours(root: Path, counts: dict[str, int], size: int = 16, seed: int = 0) -> Path:
    """Class folders of noisy one-colour PNGs, {"red": 12, ...}: each class its own colour
    (red, blue, green, in the order given), easy to tell apart."""
    rng = np.random.default_rng(seed)
    base = [(200, 30, 30), (30, 30, 200), (30, 200, 30)]
    for k, (name, n) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        colour = np.array(base[k % len(base)], dtype=float)
        for i in range(n):
            pixels = np.clip(colour + rng.normal(0, 20, (size, size, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8), "RGB").save(folder / f"{i:02d}.png")
    return root


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def spec(folder: Path) -> dict:
    from torchwork.checkpoint import stored_spec

    return stored_spec(folder / "model.safetensors")


def same_tensors(a: Path, b: Path) -> list[str]:
    """The names of the tensors that differ between two model files (none: bit-identical)."""
    first, second = load_file(a), load_file(b)
    assert first.keys() == second.keys()
    return [name for name in first if not torch.equal(first[name], second[name])]


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- 1. Quality, and what the run folder holds (the session's `digits` run, all defaults) ---


def test_digits_reach_the_quality_bar(digits):
    folder, stdout = digits
    s = summary(folder / "run")
    assert s["task"] == "multiclass" and s["loss"] == "CrossEntropyLoss"
    assert s["metrics"]["test"]["accuracy"] >= 0.95, s["metrics"]["test"]
    assert s["labels"] == [str(d) for d in range(10)]
    for split, matrix in s["confusion_matrix"].items():
        assert len(matrix) == 10 and all(len(row) == 10 for row in matrix), split
        assert sum(map(sum, matrix)) == s["rows"][split]
    assert sum(s["rows"].values()) == 1797
    assert "10 classes, 1,797 images" in stdout
    # Stratified by class: each digit's share of each split, rounded (178 zeros: 36 to test).
    counts = [len(list((folder / "digits" / str(d)).iterdir())) for d in range(10)]
    for split, fraction in (("test", 0.2), ("val", 0.1)):
        per_class = [sum(row) for row in s["confusion_matrix"][split]]
        assert per_class == [round(fraction * n) for n in counts], split


def test_digits_predictions_csv_has_one_row_per_image(digits):
    folder, _ = digits
    rows = read_rows(folder / "run" / "predictions.csv")
    probabilities = [f"probability_{d}" for d in range(10)]
    assert list(rows[0]) == ["file", "split", "label", "prediction", *probabilities]
    images = sorted(str(p.relative_to(folder / "digits")) for p in folder.glob("digits/*/*.png"))
    assert len(images) == 1797
    assert sorted(r["file"] for r in rows) == images
    assert all(r["label"] == Path(r["file"]).parts[0] for r in rows)  # the folder's name
    assert {r["prediction"] for r in rows} <= {str(d) for d in range(10)}
    s = summary(folder / "run")
    for split in ("train", "val", "test"):
        assert sum(r["split"] == split for r in rows) == s["rows"][split]
    test = [r for r in rows if r["split"] == "test"]
    right = sum(r["label"] == r["prediction"] for r in test) / len(test)
    assert right == pytest.approx(s["metrics"]["test"]["accuracy"], abs=1e-12)
    for r in rows[:50]:
        p = [float(r[name]) for name in probabilities]
        assert sum(p) == pytest.approx(1, abs=1e-5)
        assert r["prediction"] == str(int(np.argmax(p)))


def test_digits_report_shows_the_test_predictions_picture(digits):
    folder, _ = digits
    picture = folder / "run" / "plots" / "test_predictions.png"
    assert picture.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    html = (folder / "run" / "report.html").read_text()
    assert "Test images: predicted and true labels" in html
    assert base64.b64encode(picture.read_bytes()).decode() in html


# --- 2. Round trips in a new process ------------------------------------------------------


def test_predict_in_a_new_process_gives_the_runs_probabilities(digits, tmp_path):
    folder, _ = digits
    result = run_cli(
        "predict",
        "--model",
        "run/model.safetensors",
        "--input",
        "digits",
        "--out",
        str(tmp_path / "new.csv"),
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    ours = {r["file"]: r for r in read_rows(tmp_path / "new.csv")}
    theirs = {r["file"]: r for r in read_rows(folder / "run" / "predictions.csv")}
    probabilities = [f"probability_{d}" for d in range(10)]
    assert list(next(iter(ours.values()))) == ["file", "prediction", *probabilities]
    assert ours.keys() == theirs.keys() and len(ours) == 1797
    differ = [
        (name, column)
        for name in theirs
        for column in ("prediction", *probabilities)
        if (ours[name][column] if column == "prediction" else float(ours[name][column]))
        != (theirs[name][column] if column == "prediction" else float(theirs[name][column]))
    ]
    assert differ == [], differ[:5]


def test_evaluate_in_a_new_process_matches_the_predictions(digits):
    folder, _ = digits
    result = run_cli(
        "evaluate", "--model", "run/model.safetensors", "--data", "digits", "--json", cwd=folder
    )
    assert result.returncode == 0, result.stderr
    scored = json.loads(result.stdout)
    rows = read_rows(folder / "run" / "predictions.csv")
    assert scored["rows"] == len(rows) == 1797
    right = sum(r["label"] == r["prediction"] for r in rows) / len(rows)
    assert scored["metrics"]["accuracy"] == pytest.approx(right, abs=1e-12)
    assert scored["labels"] == [str(d) for d in range(10)]
    matrix = scored["confusion_matrix"]
    for i, actual in enumerate(scored["labels"]):
        for j, predicted in enumerate(scored["labels"]):
            count = sum(r["label"] == actual and r["prediction"] == predicted for r in rows)
            assert matrix[i][j] == count, (actual, predicted)


# --- 3. Layouts: train/ and test/ (and val/) used as given; two classes -------------------


def test_a_train_and_test_folder_is_used_as_given(tw, tmp_path):
    colours(tmp_path / "set" / "train", {"red": 12, "blue": 12})
    colours(tmp_path / "set" / "test", {"red": 4, "blue": 4}, seed=1)
    code, out, err = tw("run", "--data", "set", *FAST, "--epochs", "5", "--out", "r")
    assert code == 0, err
    s = summary(tmp_path / "r")
    # The validation images are a share of train/, by class: 1/8 of 12, rounded, each.
    assert s["rows"] == {"train": 20, "val": 4, "test": 8}
    assert s["task"] == "binary" and s["loss"] == "BCEWithLogitsLoss"
    assert s["labels"] == ["blue", "red"]
    rows = read_rows(tmp_path / "r" / "predictions.csv")
    assert list(rows[0]) == [
        "file",
        "split",
        "label",
        "prediction",
        "probability_blue",
        "probability_red",
    ]
    given = sorted(str(p.relative_to(tmp_path / "set")) for p in tmp_path.glob("set/test/*/*"))
    assert sorted(r["file"] for r in rows if r["split"] == "test") == given
    assert all(r["file"].startswith("train/") for r in rows if r["split"] != "test")
    assert {r["label"] for r in rows} == {r["prediction"] for r in rows} == {"blue", "red"}
    assert all(r["label"] == Path(r["file"]).parts[1] for r in rows)
    assert s["metrics"]["test"]["accuracy"] == 1.0  # red against blue
    assert "as the folder gives it" in out


def test_a_val_folder_is_used_as_given(tw, tmp_path):
    colours(tmp_path / "set" / "train", {"cat": 10, "dog": 10})
    colours(tmp_path / "set" / "val", {"cat": 2, "dog": 3}, seed=1)
    colours(tmp_path / "set" / "test", {"cat": 3, "dog": 1}, seed=2)
    code, _, err = tw("run", "--data", "set", *FAST, "--out", "r")
    assert code == 0, err
    assert summary(tmp_path / "r")["rows"] == {"train": 20, "val": 5, "test": 4}
    rows = read_rows(tmp_path / "r" / "predictions.csv")
    for split in ("train", "val", "test"):
        assert all(r["file"].startswith(f"{split}/") for r in rows if r["split"] == split)


# --- 4. Bad input: one line, exit 2, nothing written ---------------------------------------


def _noisy_png_bytes(size: int = 16) -> bytes:
    """A PNG of noise, so that cutting it in half leaves a truncated image (a one-colour PNG
    is so short that half of it can still decode)."""
    import io

    pixels = np.random.default_rng(3).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _nothing(root):
    root.mkdir()


def _no_images(root):
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    (root / "cat" / "notes.txt").write_text("not a picture")


def _a_class_without_images(root):
    colours(root, {"cat": 10})
    (root / "dog").mkdir()


def _one_class(root):
    colours(root, {"cat": 10})


def _a_corrupt_file(root):
    colours(root, {"cat": 10, "dog": 10})
    (root / "cat" / "zz_cut.png").write_bytes(_noisy_png_bytes()[:200])


def _text_named_png(root):
    colours(root, {"cat": 10, "dog": 10})
    (root / "dog" / "zz_text.png").write_text("hello, I am a text file")


def _too_small(root):
    colours(root, {"cat": 10, "dog": 10})
    Image.new("RGB", (5, 7), (9, 9, 9)).save(root / "dog" / "zz_small.png")


def _one_image_a_class(root):
    colours(root, {"cat": 1, "dog": 1})


def _two_images_a_class(root):
    colours(root, {"cat": 2, "dog": 2})


BAD_FOLDERS = [
    (_nothing, (), "pics has no class folders"),
    (_no_images, (), "class folder pics/dog has no text files"),  # its one file: a .txt
    (_a_class_without_images, (), "class folder pics/dog has no images"),
    (_one_class, (), "pics has one class folder (cat): a classifier needs at least two"),
    (_a_corrupt_file, (), "image pics/cat/zz_cut.png cannot be read"),
    (_text_named_png, (), "image pics/dog/zz_text.png cannot be read (not a JPEG, PNG"),
    (_too_small, (), "image pics/dog/zz_small.png is 5x7 pixels, smaller than 8 a side"),
    (_a_corrupt_file, ("--model", "mlp"), "--model mlp learns from rows, and pics is a folder"),
    (_a_corrupt_file, ("--image-size", "3"), "--image-size must be 0 (auto) or 8 to 1024"),
    # How many images a class needs at the fractions given, not "raise --val"
    (
        _one_image_a_class,
        (),
        "pics has too few images for a val split (--val 0.1): its largest class has 1, and at "
        "--train 0.7 --val 0.1 --test 0.2 a class needs 6 to give one to each split; add "
        "images, or give --val 0",
    ),
    (
        _two_images_a_class,
        ("--val", "0"),
        "pics has too few images for a test split (--test 0.2): its largest class has 2, and "
        "at --train 0.7 --val 0 --test 0.2 a class needs 3 to give one to each split; add images",
    ),
]


@pytest.mark.parametrize(
    ("make", "flags", "message"), BAD_FOLDERS, ids=[m.__name__.strip("_") for m, *_ in BAD_FOLDERS]
)
def test_bad_folders_are_one_line_errors_that_write_nothing(tw, tmp_path, make, flags, message):
    make(tmp_path / "pics")
    before = listing(tmp_path)
    outcome = tw("run", "--data", "pics", *FAST, *flags)  # no --out: the run would go in runs/
    assert_one_line_error(outcome, message)
    assert "Traceback" not in outcome[2]
    assert listing(tmp_path) == before  # no run folder, no runs/


def test_an_unknown_number_of_channels_is_a_usage_error(tw, tmp_path, capsys):
    colours(tmp_path / "pics", {"cat": 10, "dog": 10})
    before = listing(tmp_path)
    with pytest.raises(SystemExit) as exit:  # argparse's own one-line errors
        tw("run", "--data", "pics", *FAST, "--channels", "2")
    assert_one_line_error(
        (exit.value.code, "", capsys.readouterr().err), "--channels: invalid choice: 2"
    )
    assert listing(tmp_path) == before


def test_skip_bad_drops_the_unusable_files_and_says_how_many(tw, tmp_path):
    root = tmp_path / "pics"
    _a_corrupt_file(root)
    (root / "dog" / "zz_text.png").write_text("hello, I am a text file")
    code, out, err = tw("run", "--data", "pics", *FAST, "--skip-bad", "--out", "r")
    assert code == 0, err
    assert "2 unusable files dropped (--skip-bad)" in out
    assert "Dropped pics/cat/zz_cut.png" in out and "Dropped pics/dog/zz_text.png" in out
    s = summary(tmp_path / "r")
    assert sum(s["rows"].values()) == s["data"]["table_rows"] == 20
    assert s["data"]["folder"] == "images"
    files = {r["file"] for r in read_rows(tmp_path / "r" / "predictions.csv")}
    assert len(files) == 20 and not {"cat/zz_cut.png", "dog/zz_text.png"} & files


def test_an_image_model_on_the_line_is_refused(tw, tmp_path):
    outcome = tw("run", "--model", "cnn", "--epochs", "1", "--no-plots")
    assert_one_line_error(outcome, "--model cnn learns from images, and the line is rows")
    assert listing(tmp_path) == []


@pytest.fixture(scope="module")
def image_model(subset, tmp_path_factory):
    """A small CNN trained in this process on `subset`: its model.safetensors."""
    from torchwork.cli import main

    folder = tmp_path_factory.mktemp("image-model")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        assert main(["run", "--data", str(subset), *FAST, "--out", "run"]) == 0
    return folder / "run" / "model.safetensors"


def test_predict_refuses_pictures_for_a_table_model(tw, tmp_path, small_models):
    colours(tmp_path / "pics", {"cat": 2, "dog": 2})
    model = str(small_models["binary"])
    before = listing(tmp_path)
    for command in ("predict", "evaluate"):
        flag = "--input" if command == "predict" else "--data"
        extra = ("--out", "p.csv") if command == "predict" else ()
        assert_one_line_error(
            tw(command, "--model", model, flag, "pics", *extra),
            "learned from rows of a table",
            "give a table file",
        )
    assert listing(tmp_path) == before


def test_predict_refuses_a_table_for_an_image_model(tw, tmp_path, image_model):
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n3,4\n")
    before = listing(tmp_path)
    assert_one_line_error(
        tw("predict", "--model", str(image_model), "--input", "rows.csv", "--out", "p.csv"),
        "learned from images",
        "rows.csv",
    )
    assert_one_line_error(
        tw("evaluate", "--model", str(image_model), "--data", "rows.csv"), "learned from images"
    )
    assert_one_line_error(
        tw("predict", "--model", str(image_model), "--x", "1,2"), "learned from images"
    )
    assert listing(tmp_path) == before


def test_predict_on_one_image_and_on_a_folder_agree(tw, tmp_path, subset, image_model):
    code, out, err = tw("predict", "--model", str(image_model), "--input", str(subset))
    assert code == 0, err
    folder = {r["file"]: r for r in csv.DictReader(out.splitlines())}
    assert len(folder) == 200
    code, out, err = tw("predict", "--model", str(image_model), "--input", str(subset / "7"))
    assert code == 0, err
    seven = list(csv.DictReader(out.splitlines()))
    assert len(seven) == 20
    for r in seven:
        assert {k: v for k, v in folder[f"7/{r['file']}"].items() if k != "file"} == {
            k: v for k, v in r.items() if k != "file"
        }
    one = next(iter(sorted((subset / "3").iterdir())))
    code, out, err = tw("predict", "--model", str(image_model), "--input", str(one))
    assert code == 0, err
    (row,) = csv.DictReader(out.splitlines())
    assert {k: v for k, v in row.items() if k != "file"} == {
        k: v for k, v in folder[f"3/{one.name}"].items() if k != "file"
    }


# --- 5. Resume: stopped mid-way, then resumed, equals the run left alone -------------------

# Several shuffled batches an epoch, augmented (the default flip), cosine schedule, a
# checkpoint every epoch.
RESUMABLE = (*FAST, "--epochs", "3", "--batch-size", "32", "--checkpoint-every", "1")


def test_a_run_stopped_mid_way_resumes_bit_identical(tw, tmp_path, subset, monkeypatch):
    import torchwork.engine

    args = ("run", "--data", str(subset), *RESUMABLE)
    code, _, err = tw(*args, "--out", "whole")
    assert code == 0, err

    # Ctrl-C during the second epoch: the run stops after it, with a checkpoint.
    real_step, calls = torchwork.engine.train_step, []

    def interrupted_step(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)
        return real_step(*a, **k)

    monkeypatch.setattr(torchwork.engine, "train_step", interrupted_step)
    code, _, err = tw(*args, "--out", "stopped")
    monkeypatch.setattr(torchwork.engine, "train_step", real_step)
    assert code == 130, err
    assert "resume with: torchwork run --resume stopped" in err
    checkpoint = torch.load(tmp_path / "stopped" / "checkpoint-last.pt", weights_only=True)
    assert checkpoint["epoch"] == 2
    assert not (tmp_path / "stopped" / "model.safetensors").exists()

    code, out, err = tw("run", "--resume", "stopped")
    assert code == 0, err
    assert "Resuming stopped after epoch 1 of 3" in out
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert same_tensors(whole / "model.safetensors", stopped / "model.safetensors") == []
    assert (whole / "metrics.csv").read_bytes() == (stopped / "metrics.csv").read_bytes()
    assert summary(whole)["metrics"] == summary(stopped)["metrics"]
    assert (whole / "predictions.csv").read_bytes() == (stopped / "predictions.csv").read_bytes()


def test_resume_can_train_longer_and_matches_a_longer_run(tw, tmp_path, subset):
    # A constant learning rate: cosine decays over --epochs, so more epochs is another schedule.
    args = ("--data", str(subset), *FAST, "--batch-size", "32", "--schedule", "none")
    assert tw("run", *args, "--out", "short")[0] == 0
    code, out, err = tw("run", "--resume", "short", "--epochs", "4")
    assert code == 0, err
    assert "Resuming short after epoch 1 of 4" in out
    assert tw("run", *args, "--epochs", "4", "--out", "long")[0] == 0
    assert (
        same_tensors(
            tmp_path / "long" / "model.safetensors", tmp_path / "short" / "model.safetensors"
        )
        == []
    )
    assert (tmp_path / "long" / "metrics.csv").read_bytes() == (
        tmp_path / "short" / "metrics.csv"
    ).read_bytes()


# --- 6. Reproducible ----------------------------------------------------------------------


def test_the_same_seed_gives_the_same_model_and_augmentation_matters(tw, tmp_path, subset):
    args = ("run", "--data", str(subset), *FAST, "--batch-size", "32")
    for name in ("first", "second"):
        code, _, err = tw(*args, "--out", name)
        assert code == 0, err
    first, second = tmp_path / "first", tmp_path / "second"
    assert same_tensors(first / "model.safetensors", second / "model.safetensors") == []
    assert (first / "predictions.csv").read_bytes() == (second / "predictions.csv").read_bytes()
    assert tw(*args, "--augment", "none", "--out", "plain")[0] == 0
    differ = same_tensors(first / "model.safetensors", tmp_path / "plain" / "model.safetensors")
    assert "linear_layer.weight" in differ


# --- 7. torchrun ---------------------------------------------------------------------------


def test_nproc_2_trains_an_image_model(tmp_path, subset):
    args = ("--nproc", "2", "--data", str(subset), *FAST, "--out", "r")
    result = run_cli("run", *args, cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr
    assert "2 processes" in result.stdout and result.stdout.count("1. Data") == 1
    assert spec(tmp_path / "r")["kind"] == "cnn"
    s = summary(tmp_path / "r")
    assert s["epochs_run"] == 2 and sum(s["rows"].values()) == 200
    assert len(read_rows(tmp_path / "r" / "predictions.csv")) == 200


# --- 8. Channels and models -----------------------------------------------------------------


def test_grey_images_make_a_one_channel_model(tw, tmp_path, subset):
    code, out, err = tw("run", "--data", str(subset), *FAST, "--channels", "1", "--out", "grey")
    assert code == 0, err
    assert spec(tmp_path / "grey")["blocks"][0]["channels"] == 1
    (pictures,) = summary(tmp_path / "grey")["data"]["columns"]
    assert pictures["kind"] == "image" and "16x16 grey" in pictures["about"]
    weights = load_file(tmp_path / "grey" / "model.safetensors")
    assert weights["blocks.0.features.0.weight"].shape == (8, 1, 3, 3)
    assert weights["blocks.0.normalize.mean"].numel() == 1
    assert "16x16 grey" in out


def test_tinyvgg_with_four_channels(tw, tmp_path, subset):
    # The last --hidden wins over FAST's.
    args = ("--data", str(subset), *FAST, "--model", "tinyvgg", "--hidden", "4")
    code, _, err = tw("run", *args, "--out", "vgg")
    assert code == 0, err
    model = spec(tmp_path / "vgg")
    (pictures,) = model["blocks"]
    assert (
        model["kind"] == "tinyvgg" and pictures["widths"] == [4] and pictures["trunk"] == "tinyvgg"
    )
    assert pictures["channels"] == 3 and model["out_features"] == 10
    weights = load_file(tmp_path / "vgg" / "model.safetensors")
    assert weights["blocks.0.conv_block_1.0.weight"].shape == (4, 3, 3, 3)
    assert weights["linear_layer.weight"].shape == (10, 4 * 4 * 4)  # 16 / 4 = 4 a side
    assert len(read_rows(tmp_path / "vgg" / "predictions.csv")) == 200


def test_tinyvgg_trains_at_a_constant_rate_without_early_stopping(subset):
    from torchwork.config import RunConfig

    def train(**flags):
        return RunConfig.layered(overrides={"data.path": str(subset), **flags}).train

    cnn, vgg = train(), train(**{"model.kind": "tinyvgg"})
    assert (cnn.schedule, cnn.patience) == ("cosine", 8)
    assert (vgg.schedule, vgg.patience) == ("none", 0)
    given = train(**{"model.kind": "tinyvgg", "train.schedule": "cosine", "train.patience": 3})
    assert (given.schedule, given.patience) == ("cosine", 3)


def test_evaluate_on_a_folder_with_a_corrupt_picture_takes_the_advice_it_gives(
    tw, tmp_path, subset, image_model
):
    """The error names --skip-bad, and evaluate takes it: the other pictures are scored."""
    import shutil

    folder = tmp_path / "digits"
    shutil.copytree(subset, folder)
    (folder / "3" / "zz_cut.png").write_bytes(_noisy_png_bytes()[:200])
    outcome = tw("evaluate", "--model", str(image_model), "--data", "digits")
    assert_one_line_error(outcome, "digits/3/zz_cut.png cannot be read", "--skip-bad")
    code, out, err = tw("evaluate", "--model", str(image_model), "--data", "digits", "--skip-bad")
    assert code == 0, err
    assert "on 200 images of digits" in out, out
