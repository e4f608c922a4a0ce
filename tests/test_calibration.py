"""--calibrate: temperature scaling lowers an over-confident model's calibration error, leaves
its predicted classes alone, and goes with the model into predict, serve and exports."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_one_line_error, run_cli, serve_answer, write_csv, write_mixed_table
from torchwork.calibration import brier, expected_calibration_error, fit_temperature
from torchwork.metrics import decode_classes

# A wide MLP trained for 300 epochs without early stopping on 1,200 noisy rows: over-confident.
OVERCONFIDENT = (
    "--model", "mlp", "--hidden", "128,128", "--epochs", "300", "--patience", "0",
    "--train", "0.4", "--val", "0.3", "--no-plots",
)  # fmt: skip


@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> Path:
    """Labels drawn from a logistic model of a and b: no model can be sure of many rows."""
    rng = np.random.default_rng(0)
    n = 3000
    a, b = rng.normal(size=n), rng.normal(size=n)
    p = 1 / (1 + np.exp(-(a + 0.5 * b)))
    columns = {"a": a, "b": b, "c": rng.normal(size=n), "d": rng.normal(size=n)}
    columns["label"] = np.where(rng.uniform(size=n) < p, "yes", "no")
    path = tmp_path_factory.mktemp("calibration") / "noisy.csv"
    write_csv(path, columns)
    return path


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def test_the_temperature_of_overconfident_logits_is_above_one():
    g = torch.Generator().manual_seed(0)
    truth = torch.randint(0, 3, (2000,), generator=g)
    logits = torch.randn(2000, 3, generator=g)
    logits[torch.arange(2000), truth] += 1.0  # some signal...
    logits *= 4  # ...far too sure of it
    t = fit_temperature(logits, truth, "multiclass")
    assert 2 < t < 8
    before = decode_classes(logits, "multiclass")["probabilities"]
    after = decode_classes(logits, "multiclass", t)["probabilities"]
    assert expected_calibration_error(after, truth) < expected_calibration_error(before, truth) / 2
    assert brier(after, truth) < brier(before, truth)
    assert torch.equal(before.argmax(1), after.argmax(1))  # the same predicted classes


def test_calibrate_lowers_the_ece_of_an_overconfident_model(tmp_path, noisy, tw):
    args = ("run", "--data", str(noisy), *OVERCONFIDENT)
    code, stdout, err = tw(*args, "--calibrate", "--out", "cal")  # in this process: faster
    assert code == 0, err
    assert tw(*args, "--out", "plain")[0] == 0
    calibration = summary(tmp_path / "cal")["calibration"]
    assert calibration["temperature"] > 1.5 and calibration["val_rows"] == 900
    test = calibration["splits"]["test"]
    assert test["ece_after"] < test["ece_before"] / 2, test
    assert test["brier_after"] < test["brier_before"]
    assert "Calibration: temperature" in stdout and "test ECE" in stdout
    # The classes and every metric of the classes are those of the uncalibrated model.
    assert summary(tmp_path / "cal")["metrics"] == summary(tmp_path / "plain")["metrics"]
    assert calibration["reliability"]["split"] == "test"
    assert (
        sum(calibration["reliability"]["after"]["rows"])
        == summary(tmp_path / "cal")["rows"]["test"]
    )
    for page in ("MODEL_CARD.md", "report.html"):
        assert "temperature" in (tmp_path / "cal" / page).read_text(), page

    # predictions.csv, predict in a new process, serve and the export give the calibrated
    # probabilities.
    def probabilities(text: str) -> list[str]:
        return [row["probability_yes"] for row in csv.DictReader(io.StringIO(text))]

    in_run = probabilities((tmp_path / "cal" / "predictions.csv").read_text())
    plain = probabilities((tmp_path / "plain" / "predictions.csv").read_text())
    assert in_run != plain
    model = tmp_path / "cal" / "model.safetensors"
    predicted = run_cli("predict", "--model", str(model), "--data", str(noisy), cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    used = [i for i, value in enumerate(in_run) if value]  # rows in no split are empty
    assert len(used) == 2700
    # The run evaluates split by split, predict the whole file at once: an MLP's sums of
    # other batch shapes round differently in the last bit.
    new = probabilities(predicted.stdout)
    assert [float(new[i]) for i in used] == pytest.approx(
        [float(in_run[i]) for i in used], abs=1e-6
    )

    answer = serve_answer(model, [{"a": 2.0, "b": 1.0, "c": 0.0, "d": 0.0}])
    p_yes = answer["probabilities"][0]["yes"]
    logit = _logit(model, [2.0, 1.0, 0.0, 0.0])
    assert p_yes == pytest.approx(
        float(torch.sigmoid(torch.tensor(logit / calibration["temperature"]))), abs=1e-6
    )

    code, _, err = tw("export", "--model", str(model), "--format", "pt2", "--out", "m.pt2")
    assert code == 0, err  # the export checks itself against predict


def _logit(model: Path, row: list[float]) -> float:
    """The model's raw output for one row, through the stored preprocessing."""
    import pyarrow as pa

    from torchwork.predict import Predictor

    predictor = Predictor.from_file(model)
    table = pa.table({name: [value] for name, value in zip("abcd", row, strict=True)})
    X = predictor.encoder.transform(table)
    return float(predictor.outputs(X).reshape(-1)[0])


def test_calibrate_on_images(tw, tmp_path):
    from conftest import write_digits

    digits = write_digits(tmp_path / "digits", per_class=15)
    fast = ("--image-size", "16", "--hidden", "8,16", "--epochs", "3", "--no-plots")
    code, _, err = tw(
        "run",
        "--data",
        str(digits),
        *fast,
        "--val",
        "0.2",
        "--train",
        "0.6",
        "--calibrate",
        "--out",
        "img",
    )
    assert code == 0, err
    calibration = summary(tmp_path / "img")["calibration"]
    assert calibration["temperature"] > 0 and "ece_after" in calibration["splits"]["test"]
    from torchwork.predict import Predictor

    assert Predictor.from_file(
        tmp_path / "img" / "model.safetensors"
    ).encoder.temperature == pytest.approx(calibration["temperature"])


@pytest.mark.parametrize(
    "flags,message",
    [
        (
            ("--data", "t.csv", "--target", "y", "--calibrate"),
            "--calibrate is fitted on a validation split",
        ),
        (
            ("--data", "t.csv", "--target", "y", "--calibrate", "--train", "0.6", "--val", "0.2"),
            "--calibrate is for classification",
        ),
        (
            (
                "--data",
                "t.csv",
                "--target",
                "kind",
                "--calibrate",
                "--train",
                "0.78",
                "--val",
                "0.02",
            ),
            "--calibrate needs at least 10 validation rows",
        ),
    ],
)
def test_bad_calibrate_is_one_line_that_writes_nothing(tw, tmp_path, flags, message):
    write_mixed_table(tmp_path / "t.csv")
    assert_one_line_error(tw("run", *flags, "--out", "bad"), message)
    assert not (tmp_path / "bad").exists()


def test_calibration_on_few_rows_or_that_makes_things_worse_is_a_warning(tw, tmp_path, noisy):
    from torchwork.calibration import calibration_warnings

    better = {"ece_before": 0.1, "ece_after": 0.05, "brier_before": 0.2, "brier_after": 0.19}
    worse = {"ece_before": 0.042, "ece_after": 0.402, "brier_before": 0.2, "brier_after": 0.19}
    assert calibration_warnings({"val": better, "test": better}, 500) == []
    (warning,) = calibration_warnings({"val": better, "test": worse}, 500)
    assert warning.startswith("calibration made the test split's probabilities worse (ECE ")
    assert "0.0420 -> 0.4020" in warning and "Brier" not in warning
    (few,) = calibration_warnings({"val": better}, 12)
    assert "rests on 12 validation rows, too few to trust (at least 100)" in few
    # A run says so, and so do summary.json, the report and the card
    flags = ("--train", "0.79", "--val", "0.01", "--no-plots", "--epochs", "20")
    code, out, err = tw("run", "--data", str(noisy), "--calibrate", *flags, "--out", "few")
    assert code == 0, err
    assert "   Warning: the temperature rests on 30 validation rows, too few to trust" in out
    recorded = summary(tmp_path / "few")["calibration"]["warnings"]
    assert recorded and "30 validation rows" in recorded[0]
    for page in ("MODEL_CARD.md", "report.html"):
        assert (
            "Warning: the temperature rests on 30 validation rows"
            in (tmp_path / "few" / page).read_text()
        )
