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
    assert "Started from the Python API." in text  # called in this process, not as a command


def test_an_image_card(digits):
    folder, _ = digits
    text = card(folder / "run")
    assert "1,797 images in one sub-folder per class" in text
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
