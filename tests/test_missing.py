"""Empty cells in a table, kept as each kind takes them: a number's is its training mean with
an input saying it was empty, a category's a category of its own, a text's a document of no
words, a date's like a number's; the model file stores how, so that predict, serve and the
exported graph fill them in as training did. Rows without a target are left out, columns
empty in every row too; a picture cannot be missing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import assert_one_line_error, serve_answer, write_csv
from torchwork.kinds.base import TrainingRows


def summary(folder) -> dict:
    return json.loads((folder / "summary.json").read_text())


def holes_table(path, rows: int = 120, seed: int = 0) -> None:
    """Numbers, a category and a date with empty cells; the target rests on whether `a` was
    given (an empty `a` adds 3), which only the input for empty cells can tell."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=rows)
    empty_a = rng.random(rows) < 0.25
    colour = rng.choice(["red", "blue"], rows).astype(object)
    colour[rng.random(rows) < 0.2] = None
    day = np.array([f"2024-01-{d:02d}" for d in rng.integers(1, 29, rows)], dtype=object)
    day[rng.random(rows) < 0.1] = None
    y = 2 * np.where(empty_a, 0, a) + 3 * empty_a + (colour == "red") + rng.normal(0, 0.1, rows)
    write_csv(
        path,
        {
            "a": [None if e else float(v) for v, e in zip(a, empty_a, strict=True)],
            "colour": list(colour),
            "day": list(day),
            "y": y,
        },
    )


def test_the_mean_and_std_of_a_column_with_empty_cells_are_of_the_values_given():
    values = np.array([1.0, np.nan, 3.0, 5.0, np.nan, 100.0], dtype=np.float32)
    mean, std = TrainingRows(np.array([0, 1, 2, 3, 4]), len(values)).mean_std(values)
    assert (mean, std) == pytest.approx((3.0, np.std([1.0, 3.0, 5.0])))


def test_empty_cells_are_kept_as_each_kind_takes_them(tw, tmp_path):
    holes_table(tmp_path / "t.csv")
    code, out, err = tw("run", "--data", "t.csv", "--out", "r", "--no-plots")
    assert code == 0, err
    assert "   Empty cells, kept: 'a' (" in out and "'colour' (" in out and "'day' (" in out
    s = summary(tmp_path / "r")
    missing = s["data"]["missing"]
    assert set(missing) == {"a", "colour", "day"} and all(n > 0 for n in missing.values())
    inputs = s["data"]["inputs"]
    assert "a (empty)" in inputs and "colour=(empty)" in inputs and "day (empty)" in inputs
    # The input for an empty `a` carries the target's +3: the model finds it
    assert s["metrics"]["test"]["r2"] > 0.95
    # Every row was used, and the linear model is the closed form's
    assert sum(s["rows"].values()) == 120
    closed_form = s["reference"]["metrics"]["test"]["r2"]
    assert s["metrics"]["test"]["r2"] == pytest.approx(closed_form, abs=1e-4)
    for page in ("MODEL_CARD.md", "report.html"):
        text = (tmp_path / "r" / page).read_text()
        assert f"Empty cells, kept: a ({missing['a']})" in text, page


def test_predict_serve_and_the_export_fill_empty_cells_as_training_did(tw, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime

    from torchwork.predict import Predictor

    holes_table(tmp_path / "t.csv")
    assert tw("run", "--data", "t.csv", "--out", "r", "--no-plots")[0] == 0
    (tmp_path / "new.csv").write_text("a,colour,day\n,red,2024-01-05\n0.5,,\n1.5,blue,2024-01-09\n")
    code, out, err = tw("predict", "--model", "r/model.safetensors", "--data", "new.csv")
    assert code == 0, err
    predicted = [float(line.rsplit(",", 1)[1]) for line in out.splitlines()[1:]]
    assert out.splitlines()[1].startswith(",red,2024-01-05,")  # the row as it was written
    # The same rows as JSON, as serve takes them
    rows = [
        {"a": None, "colour": "red", "day": "2024-01-05"},
        {"a": 0.5, "colour": None, "day": None},
        {"a": 1.5, "colour": "blue", "day": "2024-01-09"},
    ]
    served = serve_answer(tmp_path / "r" / "model.safetensors", rows)["predictions"]
    assert served == pytest.approx(predicted, abs=1e-5)
    # The ONNX graph takes NaN (and a null category's place) for empty cells
    code, _, err = tw(
        "export", "--model", "r/model.safetensors", "--format", "onnx", "--out", "m.onnx"
    )
    assert code == 0, err
    sidecar = json.loads((tmp_path / "m.onnx.preprocess.json").read_text())
    model = Predictor.from_file(tmp_path / "r" / "model.safetensors")
    table = model.read(tmp_path / "new.csv")[0]
    raw = model.encoder.raw_inputs(table, model.source(tmp_path / "new.csv"))
    feeds = {i["name"]: t.numpy() for i, t in zip(sidecar["inputs"], raw, strict=True)}
    assert np.isnan(feeds["X"]).any()  # the empty `a` arrives as NaN
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    graph = session.run(None, feeds)[0].reshape(-1)
    assert graph == pytest.approx(predicted, abs=1e-4)


def test_rows_without_a_target_and_columns_without_values_are_left_out(tw, tmp_path):
    rows = 40
    write_csv(
        tmp_path / "t.csv",
        {
            "a": [float(i) for i in range(rows)],
            "nothing": [None] * rows,
            "y": [None if i % 10 == 3 else 2.0 * i for i in range(rows)],
        },
    )
    code, out, err = tw("run", "--data", "t.csv", "--out", "r", "--no-plots")
    assert code == 0, err
    assert "   Left out 4 of 40 rows whose target 'y' is empty" in out
    assert "   Left out 1 column(s) empty in every row: nothing" in out
    s = summary(tmp_path / "r")
    assert sum(s["rows"].values()) == 36 and s["data"]["features"] == ["a"]


def test_a_picture_cannot_be_missing(tw, tmp_path):
    from PIL import Image

    for i in range(8):
        Image.new("RGB", (16, 16), (30 * i, 0, 0)).save(tmp_path / f"p{i}.png")
    write_csv(
        tmp_path / "t.csv",
        {
            "photo": [None if i == 5 else f"p{i % 8}.png" for i in range(40)],
            "y": [float(i % 3) for i in range(40)],
        },
    )
    assert_one_line_error(
        tw("run", "--data", "t.csv", "--out", "r"),
        "t.csv has empty cells in 'photo' (1), of a kind that cannot be missing (image)",
        "add --dropna",
    )
    assert not (tmp_path / "r").exists()


def test_an_empty_cell_a_model_never_saw_is_filled_or_named(tw, tmp_path):
    write_csv(
        tmp_path / "t.csv",
        {
            "a": [float(i) for i in range(40)],
            "colour": ["red", "blue"] * 20,
            "y": [2.0 * i for i in range(40)],
        },
    )
    assert tw("run", "--data", "t.csv", "--out", "r", "--no-plots")[0] == 0
    from torchwork.predict import Predictor

    fill = Predictor.from_file(tmp_path / "r" / "model.safetensors").encoder.blocks[0].fill[0]
    # A number: its training mean, as if the mean were written
    (tmp_path / "new.csv").write_text(f"a,colour\n,red\n{fill!r},red\n")
    code, out, err = tw("predict", "--model", "r/model.safetensors", "--data", "new.csv")
    assert code == 0, err
    block = Predictor.from_file(tmp_path / "r" / "model.safetensors").encoder.blocks[0]
    assert fill == block.mean[0] and 10 < fill < 30  # the training rows' mean
    empty, given = (line.rsplit(",", 1)[1] for line in out.splitlines()[1:])
    assert empty == given
    (tmp_path / "new.csv").write_text("a,colour\n1.5,\n")  # a category it never saw empty
    assert_one_line_error(
        tw("predict", "--model", "r/model.safetensors", "--data", "new.csv"),
        "column 'colour' of new.csv has an empty cell in row 1, and the model never saw one "
        "empty: fill it in",
    )


def test_a_run_with_empty_cells_is_not_ejected(tw, tmp_path):
    holes_table(tmp_path / "t.csv")
    assert tw("run", "--data", "t.csv", "--out", "r", "--no-plots")[0] == 0
    assert_one_line_error(
        tw("eject", "r", "--out", "train.py"),
        "its table has empty cells, which the run filled in",
    )


def test_a_model_file_without_fills_still_refuses_empty_cells():
    from torchwork.errors import DataError
    from torchwork.kinds.number import KIND, NumberBlock

    stored = {"kind": "number", "columns": ["a"], "mean": [1.0], "std": [2.0]}
    block = KIND.from_dict(stored)
    assert isinstance(block, NumberBlock) and not block.takes_missing("a")
    full = KIND.from_dict(stored | {"fill": [1.0], "missing": [True]})
    assert full.takes_missing("a") and full.spec()["indicators"] == 1
    x = full.imputed(torch.tensor([[float("nan")], [3.0]]))
    assert x.tolist() == [[0.0, 1.0], [3.0, 0.0]]
    with pytest.raises(DataError, match="need a finite fill"):
        KIND.from_dict(stored | {"fill": ["x"], "missing": [True]})
