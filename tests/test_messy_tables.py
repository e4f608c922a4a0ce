"""Real business tables: odd CSVs, constant and ID columns, many categories, large sets."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from conftest import assert_one_line_error, write_csv
from torchwork import TorchworkError
from torchwork.config import RunConfig
from torchwork.kinds.base import Source
from torchwork.kinds.encoder import Encoder, FitOptions
from torchwork.tables.check import check_values, detect_task, select_columns
from torchwork.tables.read import CsvFormat, read_table, sniff_delimiter


def _european(path, rows=200):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 2))
    y = x @ [1.5, -2.0] + 0.5
    lines = ["x1;x2;y"] + [
        f"{a:.3f};{b:.3f};{c:.3f}".replace(".", ",") for a, b, c in zip(*x.T, y, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return x, y


def test_semicolons_and_decimal_commas(tmp_path):
    _, y = _european(tmp_path / "eu.csv")
    # Found from the first lines: a semicolon in every line as often as in the header.
    assert read_table(tmp_path / "eu.csv").column_names == ["x1", "x2", "y"]
    table = read_table(tmp_path / "eu.csv", CsvFormat(decimal=","))
    assert np.allclose(table.column("y").to_numpy(), y, atol=1e-3)
    explicit = read_table(tmp_path / "eu.csv", CsvFormat(delimiter=";", decimal=","))
    assert explicit.equals(table)
    # Without --decimal the numbers are text: the target's error says what to give.
    with pytest.raises(TorchworkError, match="--decimal ,"):
        detect_task(read_table(tmp_path / "eu.csv").column("y"), "auto", "y", "eu.csv")


@pytest.mark.parametrize(
    "head, default, found",
    [
        (b"a,b,c\n1,2,3\n4,5,6\n", ",", ","),
        (b"a;b;c\n1,5;2;3\n4,25;5;6\n", ",", ";"),  # commas only in the rows: decimal commas
        (b"a\tb\n1\t2\n", ",", "\t"),
        (b'a|b\n"x|y"|2\n', ",", "|"),  # a delimiter inside quotes does not count
        (b'name,note\nx,"a;b;c"\ny,"d;e"\n', ",", ","),
        (b"single\n1\n2\n", ",", ","),
        (b"a,b;c\n1,2;3\n4,5;6\n", ";", ";"),  # both fit: the default wins
    ],
)
def test_sniff_delimiter(head, default, found):
    assert sniff_delimiter(head, default) == found


def test_header_spaces_are_stripped(tmp_path):
    (tmp_path / "t.csv").write_text(" x1 , x2 ,y \n1 , 2.5 ,3\n 4, 5 ,6\n")
    table = read_table(tmp_path / "t.csv")
    assert table.column_names == ["x1", "x2", "y"]
    assert table.column("x2").to_pylist() == [2.5, 5.0]


def test_latin1_is_named_and_read_with_encoding(tmp_path):
    text = "x,city,y\n" + "".join(
        f"{i},{'Köln' if i % 2 else 'Zürich'},{i * 2}\n" for i in range(9)
    )
    (tmp_path / "t.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(TorchworkError, match="not UTF-8 text.*--encoding") as error:
        read_table(tmp_path / "t.csv")
    assert "binary" not in str(error.value)
    table = read_table(tmp_path / "t.csv", CsvFormat(encoding="latin-1"))
    assert table.column("city").to_pylist()[:2] == ["Zürich", "Köln"]
    with pytest.raises(TorchworkError, match=r"as ascii text \(byte 12\): give its --encoding"):
        read_table(tmp_path / "t.csv", CsvFormat(encoding="ascii"))


def test_numbers_written_for_people_are_pointed_out(tmp_path):
    notes = []
    amounts = [f"{v:,}" for v in range(1000, 200000, 7919)]
    table = pa.table({"amount": amounts, "y": list(range(len(amounts)))})
    check_values(table, ["amount", "y"], "t.csv", log=notes.append)
    assert len(notes) == 1 and "looks like numbers ('1,000')" in notes[0], notes
    plain = pa.table({"colour": ["red", "blue"] * 10, "y": list(range(20))})
    check_values(plain, ["colour", "y"], "t.csv", log=notes.append)
    assert len(notes) == 1


def _fit(table, features, **options):
    notes = []
    rows = np.arange(table.num_rows)
    where = Source("t.csv", log=notes.append)
    encoder = Encoder.fit(table, features, "y", "regression", rows, where, FitOptions(**options))
    return encoder, notes


def test_constant_and_id_columns_are_left_out_with_a_line():
    rows = 300
    table = pa.table(
        {
            "pixel_0": [0] * rows,
            "colour": ["red"] * rows,
            "id": [f"row{i}" for i in range(rows)],
            "x": np.linspace(0, 1, rows),
            "y": np.linspace(1, 2, rows),
        }
    )
    encoder, notes = _fit(table, ["pixel_0", "colour", "id", "x"])
    assert encoder.feature_names == ["x"]
    assert any("same value in every row: 'pixel_0' (0), 'colour' ('red')" in n for n in notes)
    assert any("as IDs have (name them in --features to keep them): 'id'" in n for n in notes)
    kept, _ = _fit(table, ["id", "x"], keep_ids=True)  # named in --features: kept
    assert kept.feature_names == ["id", "x"]
    with pytest.raises(TorchworkError, match="nothing to learn from"):
        _fit(table, ["pixel_0", "colour"])


def test_many_categories_are_pointed_out_and_capped():
    rng = np.random.default_rng(0)
    rows = 2000
    # 150 categories: ten common ones, then a tail of 140 seen once or twice
    codes = np.concatenate([np.arange(150), rng.integers(0, 10, rows - 150)])
    city = [f"c{c:03d}" for c in codes]
    table = pa.table({"city": city, "x": rng.normal(size=rows), "y": rng.normal(size=rows)})
    distinct = len(set(city))
    assert distinct > 100
    encoder, notes = _fit(table, ["city", "x"])
    assert len(encoder.input_names) == distinct + 1
    assert any(f"has {distinct:,} categories" in n and "--max-categories" in n for n in notes)

    capped, notes = _fit(table, ["city", "x"], max_categories=10)
    block = capped.blocks[1]
    categories = block.categories[0]
    counts = {c: city.count(c) for c in set(city)}
    assert block.other == [True] and sorted(categories) == categories
    assert set(categories) == set(sorted(counts, key=lambda c: -counts[c])[:10])
    assert len(capped.input_names) == 12 and capped.input_names[-1] == "city=(other)"
    assert any("10 most frequent" in n for n in notes)
    # A rare category and one never seen both take the 'other' code.
    new = pa.table({"city": [categories[0], "c149", "never seen"], "x": [0.0] * 3})
    X = capped.transform(new)
    assert X.tensors[1].tolist() == [[0], [10], [10]]
    again = Encoder.from_dict(json.loads(json.dumps(capped.to_dict())))
    assert torch.equal(again.transform(new).tensors[1], X.tensors[1])


def test_exclude_and_its_mistakes():
    table = pa.table({"id": [1, 2], "a": [3, 4], "b": [5, 6], "y": [7, 8]})
    assert select_columns(table, "", [], "t.csv", exclude=["id"]) == ("y", ["a", "b"])
    with pytest.raises(TorchworkError, match="--exclude: column 'zz' not in t.csv"):
        select_columns(table, "", [], "t.csv", exclude=["zz"])
    with pytest.raises(TorchworkError, match="leave it out of --exclude"):
        select_columns(table, "", [], "t.csv", exclude=["y"])


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"data": {"delimiter": ",", "decimal": ","}}, "--decimal , needs another --delimiter"),
        ({"data": {"decimal": ";"}}, "--decimal must be"),
        ({"data": {"delimiter": "ab"}}, "--delimiter must be one character"),
        ({"data": {"encoding": "klingon"}}, "unknown --encoding"),
        ({"data": {"max_categories": 1}}, "--max-categories"),
        ({"data": {"features": ["a"], "exclude": ["a"]}}, "both in --features and --exclude"),
    ],
)
def test_bad_reading_options(values, fragment):
    with pytest.raises(TorchworkError, match=fragment):
        RunConfig.from_dict(values).validate()


def test_messy_table_end_to_end(tw, tmp_path):
    rng = np.random.default_rng(3)
    rows = 400
    x = rng.normal(size=(rows, 2))
    y = x @ [2.0, -1.0]
    lines = [" x1 ; x2 ;id;const;y "] + [
        f"{a:.4f};{b:.4f};id{i};5;{t:.4f}".replace(".", ",")
        for i, (a, b, t) in enumerate(zip(*x.T, y, strict=True))
    ]
    (tmp_path / "eu.csv").write_text("\n".join(lines) + "\n")
    code, out, err = tw("run", "--data", "eu.csv", "--decimal", ",", "--out", "r", "--no-plots")
    assert code == 0, err
    assert (
        "as IDs have (name them in --features to keep them): 'id'" in out and "'const' (5)" in out
    )
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["data"]["features"] == ["x1", "x2"] and s["data"]["target"] == "y"
    assert "dropped" not in s["data"]  # no --dropna, nothing dropped
    assert s["metrics"]["test"]["r2"] > 0.999
    code, out, err = tw("run", "--data", "eu.csv", "--decimal", ",", "--exclude", "id,const",
                        "--no-reference", "--out", "r2", "--no-plots")  # fmt: skip
    assert code == 0, err
    s = json.loads((tmp_path / "r2" / "summary.json").read_text())
    assert s["reference"] == {"skipped": "--no-reference"} and "No reference" in out
    assert "No reference: --no-reference" in (tmp_path / "r2" / "report.html").read_text()
    assert_one_line_error(
        tw("run", "--data", "eu.csv", "--exclude", "nope", "--out", "r3"), "--exclude: column"
    )


def test_reference_is_skipped_where_it_would_cost_too_much(monkeypatch, tmp_path):
    from torchwork.data import prepare_data
    from torchwork.workflow import finish as workflow

    write_csv(tmp_path / "t.csv", {"a": list(range(50)), "b": [i % 7 for i in range(50)],
                                   "y": [i * 0.5 for i in range(50)]})  # fmt: skip
    config = RunConfig.from_dict({"data": {"path": str(tmp_path / "t.csv")}})
    data = prepare_data(config, lambda _: None)
    metrics, summary = workflow.reference_scores(data, ["train", "test"])
    assert "test" in metrics and "weight" in summary
    monkeypatch.setattr(workflow, "REFERENCE_MAX_INPUTS", 1)
    metrics, summary = workflow.reference_scores(data, ["train", "test"])
    assert metrics == {} and "40 rows x 2 inputs would take too long" in summary["skipped"]


def test_scatter_plots_draw_a_sample():
    pytest.importorskip("matplotlib")
    from torchwork import plots

    y = torch.randn(50_000)
    fig = plots.plot_residuals(y, y * 0.9)
    assert "a random 5,000 of 50,000 rows" in fig.axes[0].get_title()
    assert len(fig.axes[0].collections[0].get_offsets()) == plots.MAX_POINTS
    small = plots.plot_predicted_vs_actual(y[:100], y[:100])
    assert len(small.axes[0].collections[0].get_offsets()) == 100
    assert "random" not in small.axes[0].get_title()


def test_predictions_never_overwrite_an_input_column():
    from torchwork.predict import with_predictions

    table = pa.table({"x": [1.0, 2.0], "prediction": ["keep", "me"], "prediction_1": [7, 8]})
    out = with_predictions(table, None, torch.tensor([[0.5], [1.5]]))
    assert out.column_names == ["x", "prediction", "prediction_1", "prediction_2"]
    assert out.column("prediction").to_pylist() == ["keep", "me"]
    assert out.column("prediction_2").to_pylist() == [0.5, 1.5]


def test_predict_reads_new_rows_as_the_training_table_was_written(tw, tmp_path):
    _european(tmp_path / "eu.csv")
    code, _, err = tw("run", "--data", "eu.csv", "--decimal", ",", "--out", "r", "--no-plots")
    assert code == 0, err
    code, out, err = tw("predict", "--model", "r/model.safetensors", "--data", "eu.csv")
    assert code == 0, err
    assert out.splitlines()[0] == "x1,x2,y,prediction"  # written out as plain CSV
    assert len(out.splitlines()) == 201


@pytest.mark.parametrize(("name", "metric"), [("diabetes", "r2"), ("iris", "accuracy")])
def test_the_default_mlp_does_not_overfit_a_small_real_table(tw, tmp_path, name, metric):
    # diabetes: 442 rows; an mlp trained on 353 of them without validation reached train
    # R^2 0.996 and test R^2 -0.006, against 0.479 for the linear model.
    pytest.importorskip("sklearn")
    from small_tables import write_table  # benchmarks/: the same table the benchmark reads

    write_table(tmp_path / f"{name}.csv", name)
    scores = {}
    for model in ("linear", "mlp"):
        code, out, err = tw(
            "run", "--data", f"{name}.csv", "--model", model, "--out", model, "--no-plots"
        )
        assert code == 0, err
        summary = json.loads((tmp_path / model / "summary.json").read_text())
        scores[model] = summary["metrics"]["test"][metric]
    assert "--train 0.6 --val 0.2" in out  # the mlp held out its own validation rows...
    assert summary["stopped_early"]  # ...and stopped on them, with its best weights
    assert scores["mlp"] >= scores["linear"] - 0.02, scores


def _unknowns(path, rows=60):
    """A table whose number columns write a missing value as text: 'unknown' in a, '?' in b."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(rows, 2))
    lines = ["a,b,y"] + [
        f"{'unknown' if i % 10 == 3 else f'{p:.3f}'},{'?' if i % 15 == 5 else f'{q:.3f}'},"
        f"{p - q:.3f}"
        for i, (p, q) in enumerate(x)
    ]
    path.write_text("\n".join(lines) + "\n")


def test_na_values_are_missing_in_every_format(tmp_path):
    import pyarrow.parquet as pq

    _unknowns(tmp_path / "t.csv")
    na = CsvFormat(na_values=("unknown", "?"))
    table = read_table(tmp_path / "t.csv", na)
    assert table.column("a").type == pa.float64() and table.column("a").null_count == 6
    assert table.column("b").null_count == 4
    tsv = (tmp_path / "t.csv").read_text().replace(",", "\t")
    (tmp_path / "t.tsv").write_text(tsv)
    assert read_table(tmp_path / "t.tsv", na).equals(table)
    text = read_table(tmp_path / "t.csv", CsvFormat(na_values=("-",)))  # as text, untouched
    pq.write_table(text, tmp_path / "t.parquet")
    from_parquet = read_table(tmp_path / "t.parquet", na)
    assert from_parquet.column("a").null_count == 6 and from_parquet.column("b").null_count == 4
    checked = check_values(from_parquet, ["a", "b", "y"], "t.parquet", dropna=True)
    assert checked.column("a").type == pa.float64() and checked.num_rows == 50
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    for row in [["a", "y"], [1.5, 1], [" unknown ", 2], ["?", 3], [2.5, 4]]:
        book.active.append(row)
    book.save(tmp_path / "t.xlsx")
    excel = read_table(tmp_path / "t.xlsx", na)
    assert excel.column("a").to_pylist() == [1.5, None, None, 2.5]


def test_every_column_with_missing_cells_is_named_at_once():
    rows = 20
    table = pa.table(
        {
            "a": [None if i < 3 else 1.0 * i for i in range(rows)],
            "b": [1.0] * rows,
            "c": [None if i % 2 else "red" for i in range(rows)],
            "y": [None if i == 7 else 1.0 for i in range(rows)],
        }
    )
    with pytest.raises(TorchworkError) as error:
        check_values(table, ["a", "b", "c", "y"], "t.csv")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        "t.csv has empty or NaN cells in 3 columns: 'c' in 10 rows (the first row 2), 'a' in 3 "
        "rows (the first row 1), 'y' in 1 row (row 8): fill them in, or add --dropna to drop the "
        "12 of 20 rows that have any"
    ), message
    assert message.endswith("or leave out the emptiest columns with --exclude c,a"), message


def test_text_in_a_number_column_points_to_na_values_and_dropna(tw, tmp_path):
    _unknowns(tmp_path / "t.csv")
    assert_one_line_error(
        tw("run", "--data", "t.csv", "--out", "r"),
        "column 'a' of t.csv has a non-numeric value 'unknown' in row 4 (and 5 more rows); "
        "column 'b' of t.csv has a non-numeric value '?' in row 6 (and 3 more rows)",
        "add --na-values 'unknown,?' (the run then keeps them as empty cells, or drops those "
        "rows with --dropna)",
    )
    # Named, they are empty cells: kept, each the column's training mean and an input
    code, out, err = tw("run", "--data", "t.csv", "--out", "kept", "--na-values", "unknown,?",
                        "--no-plots")  # fmt: skip
    assert code == 0, err
    assert "   Empty cells, kept: 'a' (6), 'b' (4)" in out
    s = json.loads((tmp_path / "kept" / "summary.json").read_text())
    assert s["data"]["missing"] == {"a": 6, "b": 4} and sum(s["rows"].values()) == 60
    assert s["data"]["inputs"] == ["a", "b", "a (empty)", "b (empty)"]
    code, out, err = tw("run", "--data", "t.csv", "--out", "r", "--na-values", "unknown,?",
                        "--dropna", "--no-plots")  # fmt: skip
    assert code == 0, err
    assert (
        "--dropna: dropped 10 of 60 rows (17%) with empty or NaN cells, in 'a' (6), 'b' (4)" in out
    )
    warnings = [line.strip() for line in out.splitlines() if "Warning:" in line]
    assert len(warnings) == 1 and warnings[0].startswith(
        "Warning: --dropna dropped 17% of the rows"
    )
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["data"]["dropped"] == {
        "rows": 10,
        "of": 60,
        "columns": {"a": 6, "b": 4},
        "warned": True,
    }
    assert s["rows"] == {"train": 40, "test": 10}
    # The report and the card say how many rows went, why, and warn as the run did
    for page in ("MODEL_CARD.md", "report.html"):
        text = (tmp_path / "r" / page).read_text()
        assert "--dropna dropped 10 of 60 rows (17%) with empty or NaN cells, in a (6), b (4)" in (
            text
        ), page
        assert "the 50 left. Warning: more than a tenth of the rows were dropped" in text, page
    # The model keeps the setting: its '?' is an empty cell in new rows too, which the model
    # trained on fewer rows fills with the training mean (it had no input for empty cells)
    (tmp_path / "new.csv").write_text("a,b\n1.5,0.5\n2.5,?\n")
    code, out, err = tw("predict", "--model", "r/model.safetensors", "--data", "new.csv")
    assert code == 0, err
    assert out.splitlines()[2].startswith("2.5,?,")
    code, out, err = tw("evaluate", "--model", "kept/model.safetensors", "--data", "t.csv")
    assert code == 0 and "on 60 rows of t.csv" in out, err


def test_dropna_of_a_tenth_or_less_is_said_without_a_warning(tw, tmp_path):
    write_csv(tmp_path / "t.csv", {"a": [None] + [float(i) for i in range(1, 30)],
                                   "y": [2.0 * i for i in range(30)]})  # fmt: skip
    code, out, err = tw("run", "--data", "t.csv", "--out", "r", "--dropna", "--no-plots")
    assert code == 0, err
    assert "dropped 1 of 30 rows (3%) with empty or NaN cells, in 'a' (1)" in out
    assert "Warning" not in out
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["data"]["dropped"] == {"rows": 1, "of": 30, "columns": {"a": 1}, "warned": False}
    card = (tmp_path / "r" / "MODEL_CARD.md").read_text()
    assert "dropped 1 of 30 rows (3%)" in card and "Warning" not in card
