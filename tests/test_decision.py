"""Rare classes: --class-weight in the loss and a binary model's --threshold, chosen or given,
stored with the model and applied by predict, evaluate and serve."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_one_line_error, run_cli, serve_answer, write_csv
from torchwork.decision import WeightedBCEWithLogitsLoss, choose_threshold, class_weights


@pytest.fixture(scope="module")
def rare(tmp_path_factory) -> Path:
    """4,000 rows of which about 10% are 'rare', shifted in a and b; c is noise."""
    rng = np.random.default_rng(0)
    n = 4000
    y = rng.uniform(size=n) < 0.1
    a, b = rng.normal(size=n) + 1.2 * y, rng.normal(size=n) + 0.8 * y
    path = tmp_path_factory.mktemp("decision") / "rare.csv"
    write_csv(
        path, {"a": a, "b": b, "c": rng.normal(size=n), "label": np.where(y, "rare", "common")}
    )
    return path


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def rare_recall(folder: Path) -> float:
    s = summary(folder)
    matrix = s["confusion_matrix"]["test"]
    k = s["labels"].index("rare")
    return matrix[k][k] / sum(matrix[k])


def test_balanced_weights_are_scikit_learns():
    labels = torch.tensor([0] * 90 + [1] * 10)
    assert class_weights("balanced", "binary", ["a", "b"], labels) == pytest.approx(
        [100 / 180, 100 / 20]
    )
    assert class_weights("b=3", "binary", ["a", "b"], labels) == [1.0, 3.0]
    assert class_weights("", "binary", ["a", "b"], labels) is None


def test_the_weighted_bce_is_a_weighted_mean():
    loss = WeightedBCEWithLogitsLoss([1.0, 4.0])
    logits, target = torch.tensor([[0.3], [-1.0], [2.0]]), torch.tensor([[0.0], [1.0], [1.0]])
    each = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    expected = (each[0] * 1 + each[1] * 4 + each[2] * 4) / 9
    assert float(loss(logits, target)) == pytest.approx(float(expected))
    assert float(WeightedBCEWithLogitsLoss([1.0, 1.0])(logits, target)) == pytest.approx(
        float(torch.nn.functional.binary_cross_entropy_with_logits(logits, target))
    )


def test_choose_threshold_finds_the_best_f1():
    truth = torch.tensor([0, 0, 0, 1, 1])
    p = torch.tensor([0.1, 0.2, 0.35, 0.3, 0.4])
    value, best = choose_threshold(torch.stack([1 - p, p], 1), truth, "f1")
    assert best == pytest.approx(0.8) and 0.2 < value <= 0.3  # 0.3 and 0.4 positive, 0.35 not
    assert choose_threshold(torch.stack([1 - p, p], 1), truth, "accuracy")[1] == pytest.approx(0.8)


def test_balanced_class_weights_raise_the_rare_class_recall(tw, tmp_path, rare):
    args = ("run", "--data", str(rare), "--no-plots")
    assert tw(*args, "--out", "plain")[0] == 0
    code, out, err = tw(*args, "--class-weight", "balanced", "--out", "balanced")
    assert code == 0, err
    assert "Class weights in the loss: common" in out
    weights = summary(tmp_path / "balanced")["class_weights"]
    assert weights["rare"] > 4 * weights["common"]
    assert rare_recall(tmp_path / "balanced") > rare_recall(tmp_path / "plain") + 0.3
    assert "class_weights" not in summary(tmp_path / "plain")
    code, _, err = tw(*args, "--class-weight", "rare=9", "--model", "mlp", "--out", "explicit")
    assert code == 0, err
    assert summary(tmp_path / "explicit")["class_weights"] == {"common": 1.0, "rare": 9.0}


def test_an_auto_threshold_is_chosen_on_validation_and_applied_everywhere(tmp_path, rare, tw):
    flags = ("--data", str(rare), "--no-plots", "--train", "0.6", "--val", "0.2")
    assert tw("run", *flags, "--out", "plain")[0] == 0  # runs in this process: faster
    code, stdout, err = tw("run", *flags, "--threshold", "auto", "--out", "auto")
    assert code == 0, err
    s = summary(tmp_path / "auto")
    threshold = s["threshold"]
    assert threshold["metric"] == "f1" and 0 < threshold["value"] < 0.5
    assert "Threshold:" in stdout
    assert s["metrics"]["test"]["f1"] > summary(tmp_path / "plain")["metrics"]["test"]["f1"]
    assert rare_recall(tmp_path / "auto") > rare_recall(tmp_path / "plain")

    # predictions.csv, predict in a new process and serve call a row 'rare' from the threshold.
    def calls(text: str) -> list[tuple[str, float]]:
        return [
            (r["prediction"], float(r["probability_rare"] or "nan"))
            for r in csv.DictReader(io.StringIO(text))
        ]

    in_run = calls((tmp_path / "auto" / "predictions.csv").read_text())
    assert all((label == "rare") == (p >= threshold["value"]) for label, p in in_run)
    assert any(label == "rare" and p < 0.5 for label, p in in_run)
    model = tmp_path / "auto" / "model.safetensors"
    predicted = run_cli("predict", "--model", str(model), "--data", str(rare), cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert [c[0] for c in calls(predicted.stdout)] == [c[0] for c in in_run]
    assert tw("evaluate", "--model", str(model), "--data", str(rare))[0] == 0

    answer = serve_answer(model, [{"a": 0.9, "b": 0.5, "c": 0.0}, {"a": -1.0, "b": -1.0, "c": 0.0}])
    for label, probabilities in zip(answer["predictions"], answer["probabilities"], strict=True):
        assert (label == "rare") == (probabilities["rare"] >= threshold["value"])

    code, _, err = tw("export", "--model", str(model), "--format", "pt2", "--out", "m.pt2")
    assert code == 0, err
    assert (
        json.loads((tmp_path / "m.pt2.preprocess.json").read_text())["threshold"]
        == threshold["value"]
    )

    # A threshold given as a number is used as it is.
    assert tw("run", *flags, "--threshold", "0.2", "--out", "given")[0] == 0
    assert summary(tmp_path / "given")["threshold"] == {"value": 0.2, "chosen_by": "--threshold"}


@pytest.mark.parametrize(
    "flags,message",
    [
        (("--threshold", "1.5"), "--threshold must be auto or a probability between 0 and 1"),
        (("--threshold", "0"), "--threshold must be auto or a probability between 0 and 1"),
        (("--threshold", "auto"), "--threshold auto is chosen on a validation split"),
        (("--threshold", "0.3", "--target", "kind3"), "--threshold is for a binary task"),
        (("--class-weight", "x=0"), "--class-weight must be balanced or label=weight pairs"),
        (("--class-weight", "nope"), "--class-weight must be balanced or label=weight pairs"),
        (("--class-weight", "z=2"), "--class-weight names 'z', not a class here"),
        (("--class-weight", "balanced", "--target", "y"), "--class-weight is for classification"),
        (("--class-weight", "balanced", "--nproc", "2"), "--class-weight runs in one process"),
    ],
)
def test_bad_decisions_are_one_line_errors_that_write_nothing(tw, tmp_path, flags, message):
    rng = np.random.default_rng(1)
    write_csv(
        tmp_path / "t.csv",
        {
            "a": rng.normal(size=300),
            "kind3": rng.choice(["p", "q", "r"], 300),
            "y": rng.normal(size=300),
            "label": rng.choice(["x", "w"], 300),
        },
    )
    target = () if "--target" in flags else ("--target", "label")
    assert_one_line_error(tw("run", "--data", "t.csv", *target, *flags, "--out", "bad"), message)
    assert not (tmp_path / "bad").exists()
