"""Which inputs matter: permutation importance by source column on the test split, and a linear
model's coefficients in the columns' own units, against trusted answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_csv


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


@pytest.fixture(scope="module")
def one_driver(tmp_path_factory) -> Path:
    """y depends on x0 alone; x1..x3 and a text column are noise."""
    rng = np.random.default_rng(0)
    rows = 2000
    columns = {f"x{i}": rng.normal(size=rows) for i in range(4)}
    columns["colour"] = rng.choice(["red", "green", "blue"], rows)
    columns["y"] = 5 * columns["x0"] + rng.normal(0, 0.5, rows)
    path = tmp_path_factory.mktemp("importance") / "one.csv"
    write_csv(path, columns)
    return path


def test_the_one_column_that_drives_the_target_matters_far_more(tw, tmp_path, one_driver):
    code, out, err = tw("run", "--data", str(one_driver), "--model", "mlp", "--out", "m")
    assert code == 0, err
    importance = summary(tmp_path / "m")["importance"]
    assert importance["metric"] == "r2" and importance["split"] == "test"
    assert importance["repeats"] == 5
    by_name = {c["column"]: c for c in importance["columns"]}
    assert set(by_name) == {"x0", "x1", "x2", "x3", "colour"}  # the text column once
    assert importance["columns"][0]["column"] == "x0"
    others = [abs(by_name[n]["mean"]) for n in ("x1", "x2", "x3", "colour")]
    assert by_name["x0"]["mean"] > 1.0 and max(others) < 0.05, importance["columns"]
    assert all(len(c["drops"]) == 5 and c["std"] >= 0 for c in importance["columns"])
    assert "Importance, the drop in test R^2 with a column shuffled: x0" in out
    assert "coefficients" not in summary(tmp_path / "m")  # an MLP has none
    assert (tmp_path / "m" / "plots" / "importance.png").stat().st_size > 0
    html = (tmp_path / "m" / "report.html").read_text()
    assert '<section id="importance">' in html
    assert "## Which inputs matter" in (tmp_path / "m" / "MODEL_CARD.md").read_text()

    # Seeded: the same run gives the same shuffles.
    assert tw("run", "--data", str(one_driver), "--model", "mlp", "--out", "again")[0] == 0
    assert summary(tmp_path / "again")["importance"] == importance


def test_linear_coefficients_in_raw_units_match_least_squares_on_the_raw_columns(tw, tmp_path):
    rng = np.random.default_rng(1)
    rows = 3000
    metres = rng.normal(1.7, 0.1, rows)  # columns in very different units
    grams = rng.normal(70_000, 15_000, rows)
    years = rng.uniform(18, 90, rows)
    price = 300 * metres + 0.002 * grams - 1.5 * years + 40 + rng.normal(0, 2, rows)
    write_csv(
        tmp_path / "raw.csv", {"metres": metres, "grams": grams, "years": years, "price": price}
    )
    code, _, err = tw("run", "--data", "raw.csv", "--no-plots", "--out", "lin")
    assert code == 0, err
    s = summary(tmp_path / "lin")
    coefficients = s["coefficients"]
    assert coefficients["learned"]["inputs"] == ["metres", "grams", "years"]

    # The trusted answer: least squares on the raw training rows, with a column of ones.
    import pyarrow.csv as pcsv

    split = pcsv.read_csv(tmp_path / "lin" / "predictions.csv").column("split").to_pylist()
    train = np.array(split) == "train"
    A = torch.tensor(np.column_stack([metres, grams, years, np.ones(rows)])[train])
    b = torch.tensor(price[train]).unsqueeze(1)
    exact = torch.linalg.lstsq(A, b, driver="gelsd").solution.reshape(-1).tolist()
    for found in (coefficients["closed_form"], coefficients["learned"]):
        assert found["weight"][0] == pytest.approx(exact[:3], rel=1e-4)
        assert found["bias"][0] == pytest.approx(exact[3], rel=1e-4)
    # The closed form solves in float64 on the float32 scaled inputs: closer still.
    assert coefficients["closed_form"]["weight"][0] == pytest.approx(exact[:3], rel=1e-6)


def test_classification_importance_is_the_drop_in_accuracy(tw, tmp_path):
    rng = np.random.default_rng(2)
    rows = 1000
    signal, noise = rng.normal(size=rows), rng.normal(size=rows)
    label = np.where(signal > 0, "yes", "no")
    write_csv(tmp_path / "b.csv", {"signal": signal, "noise": noise, "label": label})
    code, _, err = tw("run", "--data", "b.csv", "--no-plots", "--out", "b")
    assert code == 0, err
    s = summary(tmp_path / "b")
    importance = s["importance"]
    assert importance["metric"] == "accuracy"
    assert importance["baseline"] == pytest.approx(s["metrics"]["test"]["accuracy"])
    first, second = importance["columns"]
    assert first["column"] == "signal" and first["mean"] > 0.3 > abs(second["mean"])
    learned = s["coefficients"]["learned"]  # logistic regression: one row of weights
    assert len(learned["weight"]) == 1 and learned["weight"][0][0] > 0


def test_the_line_and_images_have_no_importance(course_run):
    folder, _ = course_run
    s = summary(folder)
    assert "importance" not in s and "coefficients" not in s
