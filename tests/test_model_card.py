"""MODEL_CARD.md in every run folder: the data and its fingerprint, the split and class balance,
the metrics and their spread, what was not tested, and the record that repeats the run."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path


def card(folder: Path) -> str:
    return (folder / "MODEL_CARD.md").read_text()


def test_the_course_run_has_a_card_with_its_command(course_run):
    folder, _ = course_run
    text = card(folder)
    assert text.startswith("# Model card: course\n")
    assert "The built-in straight line y = 0.7 x + 0.3" in text
    assert "- Command: `torchwork run --epochs 100 --out course`" in text  # a fresh process
    summary = json.loads((folder / "summary.json").read_text())
    mae = summary["metrics"]["test"]["mae"]
    assert f"| test | this model | {mae:.4f} |" in text
    assert "Spread: not measured (one split, one fit)" in text
    assert "deterministic_algorithms False" in text and f"Seed {summary['seed']}" in text
    assert "```toml\n" in text and "epochs = 100" in text


def test_a_table_card_names_the_file_by_its_sha256_and_counts_the_classes(
    tw, tmp_path, small_table_files
):
    data = small_table_files / "binary.csv"
    code, out, err = tw("run", "--data", str(data), "--no-plots", "--folds", "3", "--out", "b")
    assert code == 0, err
    assert "MODEL_CARD.md" in out
    text = card(tmp_path / "b")
    assert f"sha256 `{hashlib.sha256(data.read_bytes()).hexdigest()}`" in text
    assert "3 feature columns (`a`, `b`, `color`)" in text and "target `label`" in text
    with open(tmp_path / "b" / "predictions.csv", newline="") as f:
        counts = Counter((row["split"], row["label"]) for row in csv.DictReader(f))
    for label in ("no", "yes"):
        cells = [counts[("train", label)], counts[("test", label)]]
        assert any(
            line.startswith(f"| {label} | {cells[0]:,} (") and f"| {cells[1]:,} (" in line
            for line in text.splitlines()
        ), (label, cells)
    cv = json.loads((tmp_path / "b" / "summary.json").read_text())["cross_validation"]
    mean, std = cv["mean"]["val"]["accuracy"], cv["std"]["val"]["accuracy"]
    assert "Spread over 3 fits, 3-fold cross-validation" in text
    assert f"| val | {mean:.4f} ± {std:.4f} |" in text
    assert "Anything but the 2 classes it learned: `no`, `yes`." in text
    # The command as typed, though main() was called in this process and not as `torchwork`
    assert f"- Command: `torchwork run --data {data} --no-plots --folds 3 --out b`" in text


def test_an_image_card(digits):
    folder, _ = digits
    text = card(folder / "run")
    # each digit's pictures, counted here from the class folders
    counts = {d.name: len(list(d.glob("*.png"))) for d in sorted((folder / "digits").iterdir())}
    each = ", ".join(f"{label} {n}" for label, n in counts.items())
    assert f"- A folder of 1,797 images in 10 class folders: {each}; the class is" in text
    settings = text.split("```toml\n", 1)[1].split("```", 1)[0]
    assert "image_size = " in settings and "augment = " in settings
    for line_or_table in ("weight = ", "step = ", "dropna = ", "categorical = ", "scale = "):
        assert f"\n{line_or_table}" not in settings, line_or_table
    assert "Pictures 'file': 16x16 RGB, through a CNN" in text
    assert "multiclass classification of `label`" in text
    assert text.count("| 0 |") == 1 and "| 9 |" in text  # a balance row per digit
    assert "Pictures unlike the training pictures of 'file'" in text


def test_force_clears_the_card_with_the_rest(tw, tmp_path, small_table_files):
    data = str(small_table_files / "regression.csv")
    assert tw("run", "--data", data, "--no-plots", "--out", "r")[0] == 0
    (tmp_path / "r" / "MODEL_CARD.md").write_text("stale")
    assert tw("run", "--data", data, "--no-plots", "--out", "r", "--force")[0] == 0
    assert card(tmp_path / "r").startswith("# Model card: r\n")
    assert "regression of `price`" in card(tmp_path / "r")


def test_a_run_from_python_says_so_even_after_a_command_in_the_same_process(tw, tmp_path):
    from torchwork.config import RunConfig
    from torchwork.workflow.run import run

    code, _, err = tw("run", "--epochs", "3", "--no-plots", "--out", "typed")
    assert code == 0, err
    config = RunConfig(out=str(tmp_path / "api"), plots=False)
    config.train.epochs = 3
    run(config, log=lambda line: None)
    assert "- Started from the Python API." in card(tmp_path / "api")
    assert "- Command: `torchwork run --epochs 3 --no-plots --out typed`" in card(
        tmp_path / "typed"
    )
