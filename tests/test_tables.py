import numpy as np
import pyarrow as pa
import pytest
import torch

from conftest import write_csv
from torchwork import TorchworkError
from torchwork.kinds.base import Source
from torchwork.kinds.encoder import Encoder
from torchwork.tables import read
from torchwork.tables.check import check_values, detect_task, select_columns
from torchwork.tables.read import read_table


def test_reads_every_format_to_the_same_table(tmp_path):
    import pyarrow.parquet as pq

    columns = {"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.5], "y": [0.5, 1.5, 2.5]}
    write_csv(tmp_path / "t.csv", columns)
    (tmp_path / "t.tsv").write_text("a\tb\ty\n1\t4\t0.5\n2\t5\t1.5\n3\t6.5\t2.5\n")
    pq.write_table(pa.table(columns), tmp_path / "t.parquet")
    np.save(tmp_path / "t.npy", np.array([columns["a"], columns["b"], columns["y"]]).T)
    np.savez(
        tmp_path / "t.npz", X=np.array([columns["a"], columns["b"]]).T, y=np.array(columns["y"])
    )
    for name in ("t.csv", "t.tsv", "t.parquet", "t.npy", "t.npz"):
        table = read_table(tmp_path / name)
        values = np.column_stack([table.column(i).to_numpy() for i in range(3)]).astype(float)
        assert np.array_equal(values, np.array(list(columns.values())).T), name


def test_reads_excel(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["size", "colour", "price"])
    sheet.append([1.5, "red", 10])
    sheet.append([2.5, "blue", 20])
    book.save(tmp_path / "t.xlsx")
    table = read_table(tmp_path / "t.xlsx")
    assert table.column_names == ["size", "colour", "price"]
    assert table.column("colour").to_pylist() == ["red", "blue"]
    assert table.column("price").to_pylist() == [10, 20]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("none.csv", None, "does not exist"),
        ("empty.csv", b"", "is empty"),
        ("header.csv", b"a,b,y\n", "header but no data rows"),
        ("ragged.csv", b"a,b\n1,2\n3\n", "cannot read"),
        ("binary.parquet", b"\x00\x01garbage", "cannot read"),
        ("data.json", b"{}", "use a .csv"),
        ("dup.csv", b"a,a,y\n1,2,3\n", "duplicate column names: a"),
        ("one.npy", None, "target in the last column"),
    ],
)
def test_unreadable_files_are_clear_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    if name == "one.npy":
        np.save(path, np.arange(5.0))
    with pytest.raises(TorchworkError, match=message):
        read_table(path)


def test_select_columns_defaults_and_errors():
    table = pa.table({"a": [1], "b": [2], "y": [3]})
    assert select_columns(table, "", [], "t.csv") == ("y", ["a", "b"])
    assert select_columns(table, "a", ["b"], "t.csv") == ("a", ["b"])
    with pytest.raises(
        TorchworkError, match="target column 'z' is not in t.csv; its columns are a, b, y"
    ):
        select_columns(table, "z", [], "t.csv")
    with pytest.raises(TorchworkError, match="'c' not in t.csv"):
        select_columns(table, "y", ["a", "c"], "t.csv")
    with pytest.raises(TorchworkError, match="leave it out of --features"):
        select_columns(table, "y", ["a", "y"], "t.csv")


def test_check_values_names_column_and_row(tmp_path):
    table = pa.table({"a": [1.0, None, 3.0, None], "b": ["x", "y", "z", "w"]})
    with pytest.raises(
        TorchworkError,
        match=r"column 'a' of t.csv has an empty or NaN cell in row 2 \(and 1 more row\)",
    ):
        check_values(table, ["a", "b"], "t.csv")
    said = []
    kept = check_values(table, ["a", "b"], "t.csv", dropna=True, log=said.append)
    assert kept.column("b").to_pylist() == ["x", "z"]
    assert "dropped 2 of 4 rows" in said[0]
    with pytest.raises(TorchworkError, match="infinite value in row 2"):
        check_values(pa.table({"a": [1.0, float("inf")]}), ["a"], "t.csv")
    with pytest.raises(TorchworkError, match="non-numeric value 'abc' in row 3"):
        check_values(pa.table({"a": ["1.5", "2", "abc", "4"]}), ["a"], "t.csv")


@pytest.mark.parametrize(
    ("values", "task"),
    [
        ([0.1, 2.5, 3.7, 4.2], "regression"),
        ([0, 1, 1, 0], "binary"),
        (["cat", "dog", "dog"], "binary"),
        (["a", "b", "c", "a"], "multiclass"),
        ([1, 2, 3, 2, 1], "multiclass"),
        (list(range(50)), "regression"),
    ],
)
def test_detect_task(values, task):
    assert detect_task(pa.chunked_array([values]), "auto", "y", "t.csv")[0] == task


def test_detect_task_refuses_impossible_requests():
    with pytest.raises(TorchworkError, match="use --task multiclass"):
        detect_task(pa.chunked_array([["a", "b", "c"]]), "binary", "y", "t.csv")
    with pytest.raises(TorchworkError, match="cannot be regressed"):
        detect_task(pa.chunked_array([["a", "b", "c"]]), "regression", "y", "t.csv")
    with pytest.raises(TorchworkError, match="same value in every row"):
        detect_task(pa.chunked_array([[1, 1, 1]]), "auto", "y", "t.csv")


def _fitted(table, features, task, rows, source="t.csv"):
    return Encoder.fit(table, features, "y", task, np.array(rows), Source(source))


def test_encoder_scales_on_training_rows_only_and_round_trips():
    table = pa.table(
        {"x": [1.0, 2.0, 3.0, 100.0], "c": ["u", "v", "u", "w"], "y": [1.0, 2.0, 3.0, 4.0]}
    )
    encoder = _fitted(table, ["x", "c"], "regression", [0, 1, 2])
    numbers, categories = encoder.blocks
    assert numbers.mean[0] == pytest.approx(2.0)
    assert numbers.std[0] == pytest.approx(np.std([1.0, 2.0, 3.0]))
    assert categories.categories == [["u", "v", "w"]]  # names from every row
    assert encoder.input_names == ["x", "c=u", "c=v", "c=w"]
    X = encoder.transform(table)
    assert X.tensors[0].shape == (4, 1) and X.tensors[0].is_contiguous()
    # A category is one integer a row: its place in the column's categories
    assert X.tensors[1].tolist() == [[0], [1], [0], [2]]
    again = Encoder.from_dict(encoder.to_dict())
    assert all(
        torch.equal(a, b) for a, b in zip(again.transform(table).tensors, X.tensors, strict=True)
    )
    y = encoder.encode_target(table)
    assert torch.allclose(encoder.decode(y)["prediction"], torch.tensor([1.0, 2.0, 3.0, 4.0]))


def _encoder_dict():
    table = pa.table({"x": [1.0, 2.0, 5.0], "c": ["u", "v", "u"], "y": ["a", "b", "c"]})
    return _fitted(table, ["x", "c"], "multiclass", [0, 1, 2], "t").to_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["blocks"][0].update(std=[0.0]), "number column 'x' has std 0.0, not above 0"),
        (lambda d: d["blocks"][0].update(mean=[float("nan")]), "finite mean each"),
        (lambda d: d["blocks"][1].update(categories=[[]]), "column 'c' has no categories"),
        (lambda d: d["blocks"][1].update(categories=[["u", "u"]]), "category twice"),
        (lambda d: d["blocks"][1].update(kind="sound"), "unknown kind of data 'sound'"),
        (lambda d: d["blocks"][1].update(columns=["x"]), "appears twice|not the feature columns"),
        (lambda d: d.update(features=[]), "no feature columns"),
        (lambda d: d.update(task="ranking"), "unknown task 'ranking'"),
        (lambda d: d.update(labels=["a"]), "multiclass model cannot have 1 labels"),
        (lambda d: d.update(labels=["a", "b", "a"]), "a label appears twice"),
        (lambda d: d.update(task="regression"), "regression model cannot have 3 labels"),
        (lambda d: d.update(target_std=-1.0), "target's std is -1.0"),
        (lambda d: d.pop("target"), "incomplete or malformed: 'target'"),
        (lambda d: d.update(labels=[[0], [1], [2]]), "labels must be a list of names or numbers"),
        (lambda d: d.update(labels="abc"), "labels must be a list of names or numbers"),
        (lambda d: d.update(blocks="abc"), "blocks must be a list"),
    ],
)
def test_stored_encoder_is_checked_field_by_field(change, message):
    raw = _encoder_dict()
    Encoder.from_dict(raw)  # the untouched one loads
    change(raw)
    with pytest.raises(TorchworkError, match=message):
        Encoder.from_dict(raw)


def test_an_encoder_stored_before_the_kinds_of_data_still_loads():
    # A binary table model's preprocessing as torchwork wrote it before blocks (format 1)
    old = {
        "features": [
            {"name": "x", "kind": "numeric", "categories": [], "mean": 2.0, "std": 0.5},
            {"name": "c", "kind": "categorical", "categories": ["u", "v"], "other": True},
        ],
        "target": "y",
        "task": "binary",
        "labels": ["no", "yes"],
        "threshold": 0.3,
    }
    encoder = Encoder.from_dict(old)
    assert encoder.features == ["x", "c"] and encoder.threshold == 0.3
    assert encoder.input_names == ["x", "c=u", "c=v", "c=(other)"]
    X = encoder.transform(pa.table({"x": [2.5], "c": ["w"]}))
    assert X.tensors[0].tolist() == [[1.0]] and X.tensors[1].tolist() == [[2]]
    with pytest.raises(TorchworkError, match="unknown kind 'date'"):
        Encoder.from_dict(old | {"features": [{"name": "d", "kind": "date"}]})


def test_unseen_category_and_label_are_clear_errors():
    table = pa.table({"c": ["u", "v"], "y": ["a", "b"]})
    encoder = _fitted(table, ["c"], "binary", [0, 1])
    with pytest.raises(TorchworkError, match="category 'z' in row 2, which the model never saw"):
        encoder.transform(pa.table({"c": ["u", "z"]}), "new.csv")
    with pytest.raises(TorchworkError, match="label 'q' in row 1"):
        encoder.encode_target(pa.table({"c": ["u"], "y": ["q"]}), "new.csv")


def test_a_table_of_only_constant_columns_is_refused():
    # One constant column among others is left out (test_messy_tables); alone, it is an error.
    table = pa.table({"x": [1.0, 1.0, 1.0], "y": [1.0, 2.0, 3.0]})
    with pytest.raises(TorchworkError, match=r"same value in every row: 'x' \(1\)"):
        _fitted(table, ["x"], "regression", [0, 1])


def test_numbers_stored_as_text_are_read_as_numbers_and_huge_values_refused():
    table = check_values(
        pa.table({"a": ["1", "2.5", "3"], "y": [1.0, 2.0, 3.0]}), ["a", "y"], "t.parquet"
    )
    assert pa.types.is_floating(table.column("a").type)
    assert table.column("a").to_pylist() == [1.0, 2.5, 3.0]
    with pytest.raises(TorchworkError, match="too large for 32-bit floats in row 2"):
        check_values(pa.table({"a": [1.0, 1e300]}), ["a"], "t.csv")


def _read_with_every_marker(path):
    import pyarrow.csv as pcsv

    return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(strings_can_be_null=True))


@pytest.mark.parametrize(
    ("late", "cell"),
    [
        (False, "NA"),  # in the first block: the column comes out as text, read again
        (False, "NaN"),  # parses as a float NaN, read again as a missing value
        (False, ""),
        (True, "NA"),  # after the first block: a conversion error, the whole file again
        (True, ""),
        (True, "null"),
    ],
)
@pytest.mark.parametrize("parts", [1, 3])
def test_csv_fast_path_reads_missing_markers_like_a_full_read(
    tmp_path, monkeypatch, late, cell, parts
):
    # parts=3: the file is cut into 3 parts read side by side, as large files are
    monkeypatch.setattr(pa, "cpu_count", lambda: parts)
    monkeypatch.setattr("torchwork.tables.read._CSV_SPLIT_BYTES", 1 << 16)
    rows = 60_000 if late else 50  # pyarrow infers types from its first 1 MB block
    lines = ["n,i,x,t,y"] + [f"{r},{r % 7},{r * 0.5},t{r % 3},{r % 2}" for r in range(rows)]
    at = rows - 2 if late else 3
    lines[at + 1] = f"{at},{cell},{cell},{cell},1"
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    table = read_table(path)
    assert table.equals(_read_with_every_marker(path))
    assert table.column("i").null_count == 1 and table.column("n").null_count == 0


@pytest.mark.parametrize(
    ("header", "newline", "late"),
    [
        ("a,b,c", "\n", "7,3,x"),
        ("a,b,c", "\n", "7,1.5,x"),  # a float late in an integer column: read again whole
        ('\ufeff"a","b","c"', "\r\n", "7,3,x"),  # byte-order mark, quotes, CRLF
        ("a,b,c", "\n", "7,3,x,9"),  # a ragged row late in the file
    ],
)
def test_csv_in_parts_reads_like_one_reader(tmp_path, monkeypatch, header, newline, late):
    import pyarrow.csv as pcsv

    monkeypatch.setattr(pa, "cpu_count", lambda: 3)
    monkeypatch.setattr("torchwork.tables.read._CSV_SPLIT_BYTES", 1 << 16)
    lines = [header] + [f"{r},{r % 5},{'xy'[r % 2]}" for r in range(150_000)] + [late, "1,2,y"]
    path = tmp_path / "t.csv"
    path.write_bytes(newline.join(lines).encode())  # no newline at the end
    try:
        expected = _read_with_every_marker(path)
    except pa.ArrowInvalid as e:
        with pytest.raises(TorchworkError, match=str(e).splitlines()[0]):
            read_table(path)
        return
    table = read_table(path)
    assert table.equals(expected) and table.num_rows == 150_002
    if late == "7,3,x":  # read in parts, not by the fallback to one reader
        raw = path.read_bytes()
        types = dict(zip(expected.column_names, expected.schema.types, strict=True))
        convert = read._without_markers(column_types=types)
        parts = read._read_csv_parts(
            raw, pa.py_buffer(raw), pcsv.ParseOptions(), convert, expected.column_names
        )
        assert parts.equals(expected) and parts.column(0).num_chunks >= 3
    assert table.column_names == pcsv.read_csv(path).column_names == ["a", "b", "c"]


def test_csv_fast_path_keeps_plain_numbers_and_inf(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,c,d\n1,0.5,true,x\n2,inf,false,y\n3,-1e3,true,\n")
    table = read_table(path)
    assert table.equals(_read_with_every_marker(path))
    assert table.column("d").to_pylist() == ["x", "y", None]


def test_table_to_tensor_any_chunk_layout_nulls_and_types():
    from torchwork.tables.convert import table_to_tensor

    rng = np.random.default_rng(0)
    rows = 300_000  # large enough for the threaded path
    a = rng.normal(size=rows)
    b = rng.integers(-5, 5, size=rows)
    c = rng.random(rows) < 0.5

    def chunked(values, cuts):
        return pa.chunked_array(
            [values[i:j] for i, j in zip([0, *cuts], [*cuts, rows], strict=True)]
        )

    mask = rng.random(rows) < 0.01
    table = pa.table(
        {
            "a": chunked(pa.array(a, mask=mask), [7, 100_000, 250_001]),
            "b": chunked(pa.array(b.astype(np.int16)), [150_000]),
            "c": chunked(pa.array(c), [1, 2, 3, 299_999]),
        }
    ).slice(5, rows - 10)
    tensor = table_to_tensor(table, ["c", "a", "b"])
    expected = np.column_stack([c, np.where(mask, np.nan, a), b]).astype(np.float32)[5:-5]
    assert tensor.is_contiguous() and tensor.dtype == torch.float32
    assert np.array_equal(tensor.numpy(), expected, equal_nan=True)


@pytest.mark.parametrize("parts", [1, 3])
def test_quoted_values_with_newlines_are_read_whole(tmp_path, monkeypatch, parts):
    """Valid CSV whose quoted values hold newlines, commas and escaped quotes, larger than
    pyarrow's block: never cut inside a value, whatever the file's size and the cores."""
    import pyarrow.csv as pcsv

    monkeypatch.setattr(pa, "cpu_count", lambda: parts)
    monkeypatch.setattr("torchwork.tables.read._CSV_SPLIT_BYTES", 1 << 10)
    monkeypatch.setattr("torchwork.tables.read._CSV_PART_BYTES", 1 << 16)
    rows = [f'{i},{2 * i},"one\ntwo, ""{i}"""' for i in range(60_000)]
    path = tmp_path / "t.csv"
    path.write_text("a,b,note\n" + "\n".join(rows) + "\n")
    table = read_table(path)
    assert table.column("b").to_pylist() == [2 * i for i in range(60_000)]
    assert table.column("note")[7].as_py() == 'one\ntwo, "7"'
    whole = pcsv.read_csv(path, parse_options=pcsv.ParseOptions(newlines_in_values=True))
    assert table.equals(whole)


def test_read_text_gives_each_cell_as_written(tmp_path):
    (tmp_path / "t.tsv").write_text(' flag \tx\tnote\nTrue\t1.50\t"a, b"\nFalse\t\tNA\n')
    typed = read_table(tmp_path / "t.tsv")
    assert typed.column("flag").to_pylist() == [True, False] and typed.column("x").null_count == 1
    written = read.read_text(tmp_path / "t.tsv")
    assert written.column_names == ["flag", "x", "note"]
    assert written.to_pylist() == [
        {"flag": "True", "x": "1.50", "note": "a, b"},
        {"flag": "False", "x": "", "note": "NA"},
    ]
    assert read.read_text(tmp_path / "t.parquet") is None  # its cells are typed by the file


def test_na_values_may_name_a_number(tmp_path):
    # Read without missing-value markers, a column of integers would keep its -999.
    (tmp_path / "t.csv").write_text("a,y\n1,2\n-999,3\n3,4\n")
    table = read_table(tmp_path / "t.csv", read.CsvFormat(na_values=("-999",)))
    assert table.column("a").to_pylist() == [1, None, 3]
    assert read_table(tmp_path / "t.csv").column("a").to_pylist() == [1, -999, 3]
