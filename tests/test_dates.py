"""Dates, one way everywhere: a column of dates (read as dates, or ISO text, from CSV, Parquet
or Excel) is its year, month, day of the week, day of the month and days since the earliest
training date, checked against Python's own calendar; run, predict, a model file and an
ONNX export all take them."""

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from conftest import assert_one_line_error
from torchwork import TorchworkError
from torchwork.kinds.base import Source
from torchwork.kinds.encoder import Encoder, FitOptions
from torchwork.tables.check import check_values
from torchwork.tables.read import read_table

DAYS = [dt.date(2023, 1, 1) + dt.timedelta(days=int(d)) for d in (0, 45, 59, 200, 366, 731, 800)]


def _fitted(table, features=("when", "x"), **options):
    notes = []
    where = Source("t", log=notes.append)
    rows = np.arange(table.num_rows)
    encoder = Encoder.fit(
        table, list(features), "y", "regression", rows, where, FitOptions(scale=False, **options)
    )
    return encoder, notes


def _expected(days, origin):
    """The five numbers of each date, from Python's calendar."""
    return [
        [d.year, d.month, d.weekday(), d.day, (d - origin).days]
        for d in (d.date() if isinstance(d, dt.datetime) else d for d in days)
    ]


def _files(tmp_path):
    """The same dates in a CSV (read as dates), a Parquet file of ISO text, a Parquet file
    of dates, and Excel, as dates and as text."""
    x = [float(i) for i in range(len(DAYS))]
    y = [2.0 * i for i in range(len(DAYS))]
    lines = ["when,x,y"] + [f"{d.isoformat()},{a},{b}" for d, a, b in zip(DAYS, x, y, strict=True)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    text = pa.table({"when": [d.isoformat() for d in DAYS], "x": x, "y": y})
    pq.write_table(text, tmp_path / "text.parquet")
    pq.write_table(text.set_column(0, "when", pa.array(DAYS, pa.date32())), tmp_path / "d.parquet")
    names = ["t.csv", "text.parquet", "d.parquet"]
    openpyxl = pytest.importorskip("openpyxl")
    for name, cell in (("d.xlsx", lambda d: dt.datetime(d.year, d.month, d.day)),
                       ("text.xlsx", lambda d: d.isoformat())):  # fmt: skip
        book = openpyxl.Workbook()
        book.active.append(["when", "x", "y"])
        for d, a, b in zip(DAYS, x, y, strict=True):
            book.active.append([cell(d), a, b])
        book.save(tmp_path / name)
        names.append(name)
    return names


def test_a_date_is_the_same_numbers_from_every_format(tmp_path):
    expected = torch.tensor(_expected(DAYS, DAYS[0]), dtype=torch.float32)
    for name in _files(tmp_path):
        table = check_values(read_table(tmp_path / name), ["when", "x", "y"], name)
        encoder, notes = _fitted(table)
        assert [b.kind for b in encoder.blocks] == ["number", "date"], name
        assert any("Columns: number x; date when" in n for n in notes), (name, notes)
        (line,) = [n for n in notes if "Dates" in n]
        assert "'when' from 2023-01-01" in line and "day of the week" in line, line
        X = encoder.transform(table)
        assert torch.equal(X.tensors[1], expected), name
    assert encoder.input_names[1:] == [
        "when.year", "when.month", "when.day_of_week", "when.day_of_month", "when.days"
    ]  # fmt: skip


def test_times_count_as_fractions_of_a_day_and_time_zones_in_utc():
    table = pa.table(
        {
            "when": [
                "2024-03-01",
                "2024-03-01T06:00:00",
                "2024-03-02 18:00:00Z",
                "2024-03-03T01:30:00+02:00",  # 23:30 on the 2nd in UTC
            ],
            "x": [1.0, 2.0, 3.0, 4.0],
            "y": [1.0, 2.0, 3.0, 5.0],
        }
    )
    encoder, _ = _fitted(table)
    parts = encoder.transform(table).tensors[1]
    assert parts[:, 4].tolist() == [0.0, 0.25, 1.75, pytest.approx(1 + 23.5 / 24)]
    assert parts[:, 3].tolist() == [1.0, 1.0, 2.0, 2.0]  # the day of the month, in UTC
    assert parts[:, 2].tolist() == [4.0, 4.0, 5.0, 5.0]  # Friday and Saturday


def test_dates_are_learned_from_training_rows_and_stored_as_plain_data(tmp_path):
    rows = np.array([2, 3, 4, 5])  # the earliest date, row 0, is not a training row
    table = pa.table({"when": [d.isoformat() for d in DAYS], "y": [float(i) for i in range(7)]})
    where = Source("t")
    encoder = Encoder.fit(table, ["when"], "y", "regression", rows, where, FitOptions())
    (block,) = encoder.blocks
    assert block.origin == [DAYS[2].isoformat()] and block.last == [DAYS[5].isoformat()]
    raw = torch.tensor(_expected(DAYS, DAYS[2]), dtype=torch.float64)[rows]
    assert np.allclose(block.mean, raw.mean(0).tolist())
    assert np.allclose(block.std, raw.std(0, correction=0).tolist())
    stored = json.loads(json.dumps(encoder.to_dict()))
    again = Encoder.from_dict(stored)
    assert torch.equal(again.transform(table).tensors[0], encoder.transform(table).tensors[0])
    stored["blocks"][0]["origin"] = ["2024-02-30"]
    with pytest.raises(TorchworkError, match="origin is not a date"):
        Encoder.from_dict(stored)
    stored["blocks"][0]["origin"] = ["yesterday"]
    with pytest.raises(TorchworkError, match="need an ISO date each as their origin"):
        Encoder.from_dict(stored)


def test_what_is_not_a_date_is_named():
    where = Source("t.csv")
    mixed = pa.table({"when": ["2024-03-01", "soon", "2024-03-03"], "y": [1.0, 2.0, 3.0]})
    encoder, _ = _fitted(mixed, features=["when"])
    assert encoder.blocks[0].kind != "date"  # not every value is a date
    with pytest.raises(TorchworkError, match=r"--kind when=date: .*\"soon\" in row 2"):
        _fitted(mixed, features=["when"], kinds={"when": "date"})
    with pytest.raises(TorchworkError, match="--kind x=date: column 'x' .* holds double values"):
        _fitted(pa.table({"x": [1.0, 2.0], "y": [1.0, 2.0]}), features=["x"], kinds={"x": "date"})
    good = pa.table({"when": ["2024-03-01", "2024-03-05", "2024-03-03"], "y": [1.0, 2.0, 3.0]})
    encoder, _ = _fitted(good, features=["when"], kinds={"when": "date"})
    with pytest.raises(TorchworkError, match=r"\"2024-02-30\" in row 2, which is not a date"):
        encoder.transform(pa.table({"when": ["2024-03-01", "2024-02-30"]}), where)
    block = encoder.blocks[0]
    with pytest.raises(
        TorchworkError, match="must hold dates as ISO 8601 text: 2024-03-01.*; row 1 has 3"
    ):
        block.from_json("when", [3], where)
    assert block.from_json("when", ["2024-03-09", None], where).to_pylist() == ["2024-03-09", None]


def test_a_date_column_runs_predicts_and_exports(tw, tmp_path):
    """A CSV's dates (read as dates) train a model that predicts from the same dates as
    Parquet text, and from a request's JSON text; the ONNX export takes the five numbers."""
    rng = np.random.default_rng(0)
    days = [dt.date(2022, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 900, 80)]
    x = rng.normal(size=80)
    y = [(d - dt.date(2022, 1, 1)).days / 100 + d.weekday() + a for d, a in zip(days, x, strict=True)]  # fmt: skip
    lines = ["when,x,y"] + [f"{d},{a:.4f},{b:.4f}" for d, a, b in zip(days, x, y, strict=True)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    code, out, err = tw("run", "--data", "d.csv", "--out", "r", "--no-plots")
    assert code == 0, err
    assert "date when" in out and "Dates 'when' from" in out
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["metrics"]["test"]["r2"] > 0.999  # the days and the weekday are inputs
    assert [c["kind"] for c in s["data"]["columns"]] == ["number", "date"]
    written = read_table(tmp_path / "d.csv")  # the same numbers, the dates as text
    text = written.set_column(0, "when", pa.array([str(d) for d in days], pa.string()))
    pq.write_table(text, tmp_path / "d.parquet")
    _, from_csv, err = tw("predict", "--model", "r/model.safetensors", "--data", "d.csv")
    _, from_parquet, err = tw("predict", "--model", "r/model.safetensors", "--data", "d.parquet")
    last = [line.rsplit(",", 1)[1] for line in from_csv.splitlines()]
    assert last == [line.rsplit(",", 1)[1] for line in from_parquet.splitlines()], err
    assert from_csv.splitlines()[1].startswith(lines[1] + ",")  # the dates as written

    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    code, out, err = tw("export", "--model", "r/model.safetensors", "--format", "onnx")
    assert code == 0, err
    sidecar = json.loads((tmp_path / "r" / "model.onnx.preprocess.json").read_text())
    dates = sidecar["inputs"][1]
    assert dates["name"] == "dates" and dates["shape"] == ["batch", 5]
    assert list(dates["origin"]) == ["when"] and dates["origin"]["when"] >= str(min(days))
    assert "day of the week (0 Monday to 6 Sunday)" in dates["how"]


def test_a_date_run_refuses_a_date_it_cannot_read(tw, tmp_path):
    (tmp_path / "d.csv").write_text(
        "when,y\n" + "".join(f"2024-03-{d:02d},{d}\n" for d in range(1, 21))
    )
    code, _, err = tw("run", "--data", "d.csv", "--out", "r", "--no-plots", "--epochs", "2")
    assert code == 0, err
    (tmp_path / "new.csv").write_text("when\n2024-03-01\nlast week\n")
    assert_one_line_error(
        tw("predict", "--model", "r/model.safetensors", "--data", "new.csv"),
        "column 'when' of new.csv has \"last week\" in row 2, which is not a date",
    )
