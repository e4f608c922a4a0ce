"""Export to ONNX and .pt2: each export, loaded by a fresh Python that never imports torchwork,
predicts what `torchwork predict` predicts."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
import torch

from torchwork.errors import TorchworkError
from torchwork.export import export_model
from torchwork.predict import Predictor

# Runs in a fresh interpreter: only numpy and onnxruntime or torch, as a deployment would.
LOADER = """
import sys
import numpy as np

artifact, rows, out = sys.argv[1:4]
X = dict(np.load(rows))  # the graph's inputs by name
if artifact.endswith(".onnx"):
    import onnxruntime

    session = onnxruntime.InferenceSession(artifact, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    run = lambda X: session.run(None, {name: X[name] for name in names})[0]
else:
    import torch

    module = torch.export.load(artifact).module()
    names = list(X)  # in the order the sidecar lists them
    run = lambda X: module(*(torch.from_numpy(X[name]) for name in names)).detach().numpy()
np.save(out, run(X))
first = {name: values[:1] for name, values in X.items()}
np.save(out.replace(".npy", "-one.npy"), run(first))  # the batch size is not baked in
assert "torchwork" not in sys.modules
"""


@pytest.fixture
def models(small_models, tmp_path_factory):
    """The session's tiny runs (conftest.py): the line, a binary and a multiclass table with a
    text column, a scaled regression table, each beside its data. A copy for each test, as an
    export is written beside its model (and outside tmp_path, which some tests keep empty)."""
    return shutil.copytree(small_models["folder"], tmp_path_factory.mktemp("runs") / "runs")


def inputs_from_sidecar(sidecar: dict, table: pa.Table) -> dict[str, np.ndarray]:
    """The export's inputs built from the JSON file alone, as another program would."""
    inputs = {}
    for spec in sidecar["inputs"]:
        if spec["dtype"] == "float32":  # number columns in their own units
            columns = [table.column(name).to_numpy().astype(np.float32) for name in spec["columns"]]
            inputs[spec["name"]] = np.stack(columns, axis=1)
        else:  # each category column's code: its place in the listed categories
            codes = []
            for name in spec["columns"]:
                listed = spec["categories"][name]
                values = table.column(name).to_pylist()
                codes.append([listed.index(v) if v in listed else len(listed) for v in values])
            inputs[spec["name"]] = np.array(codes, dtype=np.int64).T
    return inputs


def run_fresh(artifact, X: dict[str, np.ndarray], tmp_path) -> tuple[np.ndarray, np.ndarray]:
    (tmp_path / "loader.py").write_text(LOADER)
    np.savez(tmp_path / "rows.npz", **X)
    result = subprocess.run(
        [sys.executable, "loader.py", str(artifact), "rows.npz", "outputs.npy"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return np.load(tmp_path / "outputs.npy"), np.load(tmp_path / "outputs-one.npy")


@pytest.mark.parametrize("name", ["line", "regression", "binary", "multiclass"])
def test_export_predicts_what_torchwork_predicts(models, name, fmt, tmp_path, monkeypatch):
    monkeypatch.chdir(models)  # where the runs' data files are, to check on their test rows
    model_path = models / name / "model.safetensors"
    logged = []
    result = export_model(model_path, fmt, log=logged.append)

    assert result.path == models / name / f"model.{fmt}" and result.path.is_file()
    assert result.checked_on == "test rows" and result.rows_checked == (
        10 if name == "line" else 40
    )
    assert result.max_abs_diff <= 1e-5
    assert logged[0].startswith(
        f"Exported {result.path}; checked on {result.rows_checked} test rows"
    )

    predictor = Predictor.from_file(model_path)
    encoder = predictor.encoder
    if encoder is None:
        assert result.sidecar is None and result.input_names == ["x"]
        X = {"X": np.linspace(-1, 2, 25, dtype=np.float32).reshape(-1, 1)}
        expected = predictor.outputs(torch.from_numpy(X["X"])).numpy()
    else:
        sidecar = json.loads(result.sidecar.read_text())
        assert result.sidecar == models / name / f"model.{fmt}.preprocess.json"
        assert [spec["name"] for spec in sidecar["inputs"]] == result.input_names
        assert sidecar["labels"] == encoder.labels and sidecar["task"] == encoder.task
        table = pcsv.read_csv(models / f"{name}.csv")
        table = table.slice(0, 25)
        X = inputs_from_sidecar(sidecar, table)
        # The trusted answer: torchwork's own encoding and decoding, which the graph must match.
        decoded = encoder.decode(predictor.outputs(encoder.transform(table)))
        if encoder.task == "regression":
            expected = decoded["prediction"].numpy().reshape(-1, 1)
        else:
            expected = decoded["probabilities"].numpy()
            assert any("not in the graph" in note for note in result.notes)
        if "color" in encoder.feature_names:
            (categories,) = [spec for spec in sidecar["inputs"] if spec["name"] == "categories"]
            assert categories["categories"] == {"color": ["blue", "green", "red"]}
            assert any("'categories' int64" in note for note in result.notes)
            assert any("'categories' int64" in line for line in logged)

    outputs, one = run_fresh(result.path, X, tmp_path)
    assert outputs.shape == expected.shape
    np.testing.assert_allclose(outputs, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(one, expected[:1], rtol=0, atol=1e-5)


def test_bare_pth_is_checked_on_random_rows(models, tmp_path):
    logged = []
    result = export_model(
        models / "line" / "model.pth", "pt2", out=tmp_path / "line.pt2", log=logged.append
    )
    assert result.checked_on == "random rows" and result.rows_checked > 0
    assert result.path.is_file() and result.sidecar is None
    assert "keeps no config" in result.notes[0]
    assert "random rows" in logged[0]


def test_a_table_model_whose_data_is_gone_is_checked_on_random_rows(models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # regression.csv is not here
    result = export_model(
        models / "regression" / "model.safetensors", "pt2", out="r.pt2", log=lambda *_: None
    )
    assert result.checked_on == "random rows"
    assert "regression.csv is not here" in result.notes[0]
    assert (tmp_path / "r.pt2.preprocess.json").is_file()


def test_an_export_that_differs_from_pytorch_is_not_written(models, tmp_path, monkeypatch):
    import torchwork.export

    def wrong(pipeline, example, path, X):
        path.write_bytes(b"not a model")
        with torch.inference_mode():
            return pipeline(*X) + 1

    monkeypatch.setattr(torchwork.export, "_export_pt2", wrong)
    out = tmp_path / "m.pt2"
    with pytest.raises(TorchworkError, match="differs from PyTorch"):
        export_model(models / "line" / "model.safetensors", "pt2", out=out, log=lambda *_: None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("fmt", "out", "message"),
    [
        ("tflite", None, "unknown export format 'tflite': use onnx or pt2"),
        ("pt2", "model.onnx", "with a .pt2 suffix"),
        ("pt2", "nowhere/model.pt2", "folder nowhere does not exist"),
    ],
)
def test_bad_format_or_output_is_one_clear_error(models, fmt, out, message, monkeypatch):
    monkeypatch.chdir(models)
    with pytest.raises(TorchworkError, match=message):
        export_model("line/model.safetensors", fmt, out=out)


def test_missing_model_file_is_one_clear_error(tmp_path):
    with pytest.raises(TorchworkError, match="does not exist"):
        export_model(tmp_path / "missing.safetensors", "pt2")


def test_onnx_without_its_packages_says_what_to_install(models, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(TorchworkError, match=r"pip install 'torchwork\[onnx\]'"):
        export_model(models / "line" / "model.safetensors", "onnx")


def test_a_stored_config_that_run_refuses_is_refused_before_any_data_is_made(tmp_path):
    from torchwork import LinearRegressionModel, save

    # 20 million rows, twice what run allows (a copy with 1e-9 built 6 GB before)
    config = {"data": {"step": 5e-8}}
    path = save(LinearRegressionModel(), tmp_path / "m.safetensors", config=config)
    with pytest.raises(TorchworkError, match="would refuse: the line would have 2e\\+07 rows"):
        export_model(path, "pt2", log=lambda *_: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_an_out_name_with_a_control_character_is_refused(tmp_path):
    from torchwork import LinearRegressionModel, save

    path = save(LinearRegressionModel(), tmp_path / "m.safetensors")
    with pytest.raises(TorchworkError, match="control character"):
        export_model(path, "pt2", tmp_path / "a\nb.pt2", log=lambda *_: None)


def test_an_existing_export_is_not_overwritten_without_force(models, tmp_path):
    model = models / "line" / "model.safetensors"
    first = export_model(model, "pt2", log=lambda *_: None)
    before = first.path.read_bytes()
    with pytest.raises(
        TorchworkError, match="already exists: choose another --out, or add --force"
    ):
        export_model(model, "pt2", log=lambda *_: None)
    taken = tmp_path / "taken.pt2"
    taken.write_bytes(b"someone's file")
    with pytest.raises(TorchworkError, match=f"--out {taken} already exists"):
        export_model(model, "pt2", out=taken, log=lambda *_: None)
    assert taken.read_bytes() == b"someone's file" and first.path.read_bytes() == before
    again = export_model(model, "pt2", out=taken, log=lambda *_: None, force=True)
    assert again.path == taken and taken.read_bytes() != b"someone's file"
