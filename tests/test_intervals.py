"""--interval: split-conformal prediction intervals, their coverage over many seeds, and the
bounds in predictions.csv, `predict`, `serve` and the export's preprocessing."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_one_line_error, run_cli, serve_answer, write_csv, write_mixed_table
from torchwork.intervals import coverage, half_width, rows_needed

FLAGS = ("--train", "0.6", "--val", "0.2", "--no-plots")


@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> Path:
    """A regression table of 2,000 rows whose noise a model cannot learn."""
    rng = np.random.default_rng(0)
    rows = 2000
    a, b = rng.normal(size=rows), rng.uniform(0, 10, rows)
    price = 4 * a + b + rng.standard_t(4, rows)  # heavy-tailed noise: not Gaussian
    path = tmp_path_factory.mktemp("intervals") / "noisy.csv"
    write_csv(path, {"a": a, "b": b, "price": price})
    return path


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def read_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_half_width_is_the_conformal_quantile_of_the_errors():
    truth = torch.arange(1.0, 11.0)  # errors 1..10 against predictions of 0
    zero = torch.zeros(10)
    assert half_width(zero, truth, 0.9) == 10.0  # ceil(11 * 0.9) = 10th smallest
    assert half_width(zero, truth, 0.5) == 6.0  # ceil(11 * 0.5) = 6th
    assert rows_needed(0.9) == 9 and rows_needed(0.8) == 4
    assert coverage(zero, truth, 6.0) == 0.6


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95])
def test_coverage_on_held_out_rows_is_the_level_over_many_seeds(level):
    covered = []
    for seed in range(300):
        g = torch.Generator().manual_seed(seed)
        errors_val = torch.randn(200, generator=g) ** 3  # any distribution, the same for both
        errors_test = torch.randn(500, generator=g) ** 3
        width = half_width(torch.zeros(200), errors_val, level)
        covered.append(coverage(torch.zeros(500), errors_test, width))
    assert abs(statistics.fmean(covered) - level) < 0.03, statistics.fmean(covered)


def test_runs_cover_their_test_rows_at_the_level_over_seeds(tw, tmp_path, noisy):
    coverages = []
    for seed in range(8):
        out = f"s{seed}"
        code, log, err = tw(
            "run",
            "--data",
            str(noisy),
            *FLAGS,
            "--interval",
            "0.9",
            "--seed",
            str(seed),
            "--out",
            out,
        )
        assert code == 0, err
        interval = summary(tmp_path / out)["interval"]
        assert interval["level"] == 0.9 and interval["fitted_on"] == "val"
        assert interval["val_rows"] == 400 and interval["half_width"] > 0
        coverages.append(interval["test_coverage"])
    assert abs(statistics.fmean(coverages) - 0.9) < 0.03, coverages
    assert "Interval: prediction ±" in log and "test rows inside" in log

    # predictions.csv holds each row's bounds, prediction ± the half-width.
    width = summary(tmp_path / "s7")["interval"]["half_width"]
    rows = read_rows((tmp_path / "s7" / "predictions.csv").read_text())
    for row in rows[:50]:
        assert float(row["lower"]) == pytest.approx(float(row["prediction"]) - width, abs=1e-3)
        assert float(row["upper"]) == pytest.approx(float(row["prediction"]) + width, abs=1e-3)
    test = [r for r in rows if r["split"] == "test"]
    inside = [float(r["lower"]) <= float(r["price"]) <= float(r["upper"]) for r in test]
    assert sum(inside) / len(inside) == pytest.approx(
        summary(tmp_path / "s7")["interval"]["test_coverage"], abs=0.01
    )


def test_predict_serve_and_export_carry_the_bounds(tmp_path, noisy):
    result = run_cli(
        "run", "--data", str(noisy), *FLAGS, "--interval", "0.8", "--out", "run", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    model = tmp_path / "run" / "model.safetensors"
    covered = summary(tmp_path / "run")["interval"]["test_coverage"]
    for page in ("MODEL_CARD.md", "report.html"):
        text = (tmp_path / "run" / page).read_text()
        assert "Prediction intervals: prediction ±" in text and "80% coverage" in text, page
        assert f"{covered:.1%}" in text, page
    result = run_cli("predict", "--model", str(model), "--data", str(noisy), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    predicted = read_rows(result.stdout)
    in_run = read_rows((tmp_path / "run" / "predictions.csv").read_text())
    assert [r["lower"] for r in predicted] == [r["lower"] for r in in_run]
    assert [r["upper"] for r in predicted] == [r["upper"] for r in in_run]

    answer = serve_answer(model, [{"a": 0.5, "b": 3.0}, {"a": -1.0, "b": 9.0}])
    width = summary(tmp_path / "run")["interval"]["half_width"]
    for p, lo, hi in zip(answer["predictions"], answer["lower"], answer["upper"], strict=True):
        assert lo == pytest.approx(p - width, abs=1e-3) and hi == pytest.approx(p + width, abs=1e-3)

    result = run_cli(
        "export", "--model", str(model), "--format", "pt2", "--out", "m.pt2", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((tmp_path / "m.pt2.preprocess.json").read_text())
    assert sidecar["interval"] == [0.8, pytest.approx(width)]


TABLE = ("--data", "t.csv")


@pytest.mark.parametrize(
    "flags,message",
    [
        ((*TABLE, "--interval", "0.9"), "--interval is fitted on a validation split: add --val"),
        ((*TABLE, "--interval", "1.5", *FLAGS), "--interval must be a coverage between 0 and 1"),
        (
            (*TABLE, "--interval", "0.99", "--train", "0.7", "--val", "0.02"),
            "needs at least 99 validation rows",
        ),
        ((*TABLE, "--interval", "0.9", "--target", "kind", *FLAGS), "--interval is for regression"),
        (("--interval", "0.9", *FLAGS), "--interval is for a table's regression"),  # the line
    ],
)
def test_bad_intervals_are_one_line_errors_that_write_nothing(tw, tmp_path, flags, message):
    write_mixed_table(tmp_path / "t.csv")
    assert_one_line_error(tw("run", *flags, "--out", "bad"), message)
    assert not (tmp_path / "bad").exists()
