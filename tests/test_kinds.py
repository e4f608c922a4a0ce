"""The kinds of data: each column recognised and encoded by its kind, categories as one integer
a row whose weights are rows of an embedding (the function of one-hot inputs times weights),
and model files written before the kinds still loading and predicting what they did."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch import nn

from torchwork import TorchworkError
from torchwork.kinds.base import Inputs, Source
from torchwork.kinds.encoder import Encoder, FitOptions
from torchwork.models import TabularModel, build_model
from torchwork.predict import Predictor


def _fitted(table, features, task="regression", **options):
    notes = []
    rows = np.arange(table.num_rows)
    where = Source("t.csv", log=notes.append)
    encoder = Encoder.fit(table, features, "y", task, rows, where, FitOptions(**options))
    return encoder, notes


def test_columns_are_recognised_said_and_overridden():
    table = pa.table(
        {
            "size": [1.0, 2.0, 3.0, 4.0],
            "colour": ["red", "blue", "red", "green"],
            "zip": [1000, 2000, 1000, 3000],
            "y": [1.0, 2.0, 3.0, 4.0],
        }
    )
    encoder, notes = _fitted(table, ["size", "colour", "zip"])
    assert any("Columns: number size, zip; category colour" in n for n in notes), notes
    assert [b.kind for b in encoder.blocks] == ["number", "category"]
    overridden, notes = _fitted(table, ["size", "colour", "zip"], kinds={"zip": "category"})
    assert any("number size; category colour, zip" in n for n in notes), notes
    assert overridden.blocks[1].categories[1] == ["1000", "2000", "3000"]  # as text
    with pytest.raises(TorchworkError, match="--kind names column.*'nope'.*not feature columns"):
        _fitted(table, ["size"], kinds={"nope": "category"})


def test_a_category_costs_one_integer_a_row():
    rows = 30_000
    codes = np.arange(rows) % 13_000
    table = pa.table({"shop": [f"s{c:05d}" for c in codes], "y": (codes % 7).astype(float)})
    encoder, _ = _fitted(table, ["shop"], keep_ids=True)
    X = encoder.transform(table)
    (block,) = X.tensors
    assert block.shape == (rows, 1) and block.dtype == torch.int64  # not 13,000 floats a row
    assert len(encoder.input_names) == 13_000


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_category_weights_are_one_hot_inputs_times_weights(kind):
    """The same function as the model a one-hot encoding would give: a linear layer over the
    numbers and the one-hot columns, whose category columns are the embedding's rows."""
    torch.manual_seed(0)
    blocks = [{"kind": "number", "columns": 2}, {"kind": "category", "sizes": [3, 4]}]
    model = TabularModel(blocks, out_features=3, hidden=[5], task="multiclass", kind=kind)
    numbers = torch.randn(10, 2)
    codes = torch.stack([torch.randint(3, (10,)), torch.randint(4, (10,))], dim=1)
    one_hot = torch.cat(
        [nn.functional.one_hot(codes[:, 0], 3), nn.functional.one_hot(codes[:, 1], 4)], dim=1
    ).float()
    first = model.first_layer
    dense = nn.Linear(9, first.out_features)
    with torch.no_grad():
        dense.weight.copy_(model.input_weights())  # [width, numbers + one-hot inputs]
        dense.bias.copy_(first.bias)
    expected = dense(torch.cat([numbers, one_hot], dim=1))
    if kind == "mlp":
        expected = model.layers[1:](expected)
    actual = model(Inputs([numbers, codes]))
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)


def test_a_table_of_numbers_alone_is_the_linear_model_bit_for_bit():
    """The kinds changed nothing for a table of numbers: the same parameters from the same
    seed, and the same outputs to the last bit, as the linear model and the MLP."""
    from torchwork.models import MLP, LinearRegressionModelV2

    X = torch.randn(50, 4)
    for kind, plain in (("linear", LinearRegressionModelV2(4, 1)), ("mlp", MLP(4, [8, 8], 1))):
        torch.manual_seed(7)
        plain = LinearRegressionModelV2(4, 1) if kind == "linear" else MLP(4, [8, 8], 1)
        torch.manual_seed(7)
        model = build_model(
            kind, out_features=1, hidden=[8, 8], blocks=[{"kind": "number", "columns": 4}]
        )
        assert model.state_dict().keys() == plain.state_dict().keys()
        for a, b in zip(model.state_dict().values(), plain.state_dict().values(), strict=True):
            assert torch.equal(a, b)
        assert torch.equal(model(Inputs([X])), plain(X))


def _format_one_model(tmp_path):
    """A binary logistic regression over a number and a one-hot category, as torchwork wrote
    model files before the kinds of data (format 1): returns its path and its weights."""
    from safetensors.torch import save_file

    weight = torch.tensor([[0.5, 1.0, -2.0, 0.25]])  # x, c=u, c=v, c=(other)
    bias = torch.tensor([0.1])
    preprocess = {
        "features": [
            {"name": "x", "kind": "numeric", "categories": [], "mean": 1.0, "std": 2.0},
            {"name": "c", "kind": "categorical", "categories": ["u", "v"], "other": True},
        ],
        "target": "y",
        "task": "binary",
        "labels": ["no", "yes"],
        "target_mean": 0.0,
        "target_std": 1.0,
        "interval": [],
        "temperature": 1.0,
        "threshold": 0.5,
    }
    metadata = {
        "format": "torchwork",
        "format_version": "1",
        "torchwork_version": "0.1.0",
        "model": json.dumps({"kind": "linear", "in_features": 4, "out_features": 1}),
        "preprocess": json.dumps(preprocess),
    }
    path = tmp_path / "old.safetensors"
    save_file({"linear_layer.weight": weight, "linear_layer.bias": bias}, str(path), metadata)
    return path, weight, bias


def test_a_model_file_written_before_the_kinds_predicts_what_it_did(tmp_path):
    path, weight, bias = _format_one_model(tmp_path)
    predictor = Predictor.from_file(path)
    rows = pa.table({"x": [1.0, 3.0, -1.0], "c": ["u", "v", "w"]})
    _, X = predictor.encode(rows, Source("new.csv"))
    probabilities = predictor.encoder.decode(predictor.outputs(X))["probabilities"][:, 1]
    # What the old model computed: scaled x, then one input per category (w is "other")
    one_hot = torch.tensor(
        [[(1.0 - 1) / 2, 1, 0, 0], [(3.0 - 1) / 2, 0, 1, 0], [(-1.0 - 1) / 2, 0, 0, 1]]
    )
    expected = torch.sigmoid(one_hot @ weight.t() + bias).reshape(-1)
    torch.testing.assert_close(probabilities, expected, rtol=0, atol=1e-6)
    assert predictor.model.spec()["blocks"] == [
        {"kind": "number", "columns": 1},
        {"kind": "category", "sizes": [3]},
    ]


def test_a_linear_model_of_categories_reaches_the_closed_form(tw, tmp_path):
    """L-BFGS on the embedding reaches the least-squares answer of the one-hot design, as the
    one-hot model did: the learned and closed-form test metrics agree."""
    rng = np.random.default_rng(0)
    rows = 600
    shop = rng.choice([f"s{k}" for k in range(40)], rows)
    effect = {f"s{k}": rng.normal() for k in range(40)}
    x = rng.normal(size=rows)
    y = 2 * x + np.array([effect[s] for s in shop]) + 0.1 * rng.normal(size=rows)
    import pyarrow.csv as pcsv

    pcsv.write_csv(pa.table({"x": x, "shop": shop, "y": y}), tmp_path / "shops.csv")
    code, _, err = tw("run", "--data", "shops.csv", "--out", "r", "--no-plots")
    assert code == 0, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    learned = summary["metrics"]["test"]["r2"]
    exact = summary["reference"]["metrics"]["test"]["r2"]
    assert learned == pytest.approx(exact, abs=1e-4) and learned > 0.99


def test_an_image_model_file_written_before_the_kinds_still_predicts(tmp_path):
    """A format-1 CNN (its own class: normalize, features, head) loads as the model of one
    column of pictures and gives the outputs it gave."""
    from PIL import Image
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = build_model(
        "cnn", in_features=1, out_features=1, hidden=[4], task="binary", image_size=16
    )
    model.eval()
    old_keys = {
        key: key.replace("blocks.0.", "", 1).replace("linear_layer.", "head.2.")
        for key in model.state_dict()
    }
    state = {old_keys[k]: v.contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": "torchwork",
        "format_version": "1",
        "torchwork_version": "0.1.0",
        "model": json.dumps(
            {
                "kind": "cnn",
                "in_features": 1,
                "out_features": 1,
                "hidden": [4],
                "task": "binary",
                "image_size": 16,
            }
        ),
        "preprocess": json.dumps(
            {
                "kind": "images",
                "task": "binary",
                "labels": ["cat", "dog"],
                "image_size": 16,
                "channels": 1,
            }
        ),
    }
    path = tmp_path / "old.safetensors"
    save_file(state, str(path), metadata)
    picture = tmp_path / "p.png"
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(picture)

    predictor = Predictor.from_file(path)
    assert predictor.encoder.labels == ["cat", "dog"] and predictor.file_block is not None
    table, X = predictor.read(picture)
    assert table.column("file").to_pylist() == ["p.png"]
    with torch.inference_mode():
        expected = model(X)
    torch.testing.assert_close(predictor.outputs(X), expected, rtol=0, atol=1e-6)
