import pytest
import torch

from torchwork import (
    MLP,
    LinearRegressionModel,
    LinearRegressionModelV2,
    TorchworkError,
    build_model,
)
from torchwork.errors import few
from torchwork.models import (
    LinearClassifier,
    build_from_spec,
    describe,
    parameter_shapes,
    spec_from_state_dict,
)


def test_course_model_0_starts_at_the_course_numbers():
    torch.manual_seed(42)
    model = LinearRegressionModel()
    assert list(model.state_dict()) == ["weights", "bias"]
    assert round(model.weights.item(), 4) == 0.3367
    assert round(model.bias.item(), 4) == 0.1288
    x = torch.tensor([[0.5]])
    assert torch.equal(model(x), model.weights * x + model.bias)


def test_linear_model_v2_has_the_course_keys():
    model = LinearRegressionModelV2(in_features=3)
    assert list(model.state_dict()) == ["linear_layer.weight", "linear_layer.bias"]
    assert model(torch.zeros(4, 3)).shape == (4, 1)


def test_mlp_shape_and_spec():
    model = MLP(in_features=2, hidden=[8, 4], out_features=3)
    assert model(torch.zeros(5, 2)).shape == (5, 3)
    assert model.spec() == {"kind": "mlp", "in_features": 2, "out_features": 3, "hidden": [8, 4]}


@pytest.mark.parametrize("kind", ["params", "linear", "mlp"])
def test_spec_round_trips_and_is_recognised_from_a_state_dict(kind):
    in_features = 1 if kind == "params" else 3
    model = build_model(kind, in_features=in_features, hidden=[5, 6])
    assert build_from_spec(model.spec()).spec() == model.spec()
    assert spec_from_state_dict(model.state_dict()) == model.spec()


def test_params_model_refuses_several_features():
    with pytest.raises(TorchworkError, match="--model linear"):
        build_model("params", in_features=3)


def test_unknown_state_dict_is_refused():
    with pytest.raises(TorchworkError, match="match no torchwork model"):
        spec_from_state_dict({"conv.weight": torch.zeros(3, 3)})


SPECS = [
    {"kind": "params", "in_features": 1, "out_features": 1},
    {"kind": "linear", "in_features": 3, "out_features": 1},
    {"kind": "linear", "in_features": 3, "out_features": 1, "task": "binary"},
    {"kind": "linear", "in_features": 3, "out_features": 4, "task": "multiclass"},
    {"kind": "mlp", "in_features": 2, "out_features": 3, "hidden": [5, 6]},
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s['kind']}-{s.get('task', '')}")
def test_parameter_shapes_are_the_built_models(spec):
    # The shapes a file is checked against, found without building, are the classes' own.
    model = build_from_spec(spec)
    built = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert list(parameter_shapes(spec).items()) == list(built.items())
    assert model.spec() == spec


def test_models_are_named_for_what_they_are():
    assert type(build_model("params")) is LinearRegressionModel
    assert type(build_model("linear", in_features=3)) is LinearRegressionModelV2
    binary = build_model("linear", in_features=3, task="binary")
    assert type(binary) is LinearClassifier and repr(binary).startswith("LinearClassifier(")
    assert list(binary.state_dict()) == ["linear_layer.weight", "linear_layer.bias"]
    assert "logistic regression" in describe(binary.spec())
    assert "LinearRegression" not in describe(binary.spec())
    # Files written before descriptions named the task: the preprocessing's task decides.
    old = {"kind": "linear", "in_features": 3, "out_features": 1}
    assert type(build_from_spec(old)) is LinearRegressionModelV2
    assert "logistic regression" in describe(old, "binary")
    assert "MLP" in describe({"kind": "mlp", "in_features": 2, "out_features": 1, "hidden": [4]})


def test_a_description_beyond_runs_limits_is_refused_before_building():
    with pytest.raises(TorchworkError, match="300,010 hidden layers, more than") as error:
        parameter_shapes(
            {"kind": "mlp", "in_features": 1, "out_features": 1, "hidden": [1] * 300010}
        )
    assert len(str(error.value)) < 200
    for bad in (
        {"kind": "x" * 10_000, "in_features": 1, "out_features": 1},
        {"kind": "linear", "in_features": True, "out_features": 1},
        {"kind": "linear", "in_features": 3, "out_features": 1, "task": "poetry"},
        {"kind": "params", "in_features": 3, "out_features": 1},
        {"kind": "mlp", "in_features": 1, "out_features": 1, "hidden": [0]},
        [],
    ):
        with pytest.raises(TorchworkError) as error:
            build_from_spec(bad)
        assert len(str(error.value)) < 200


def test_odd_state_dict_keys_are_a_clear_error():
    odd = {f"layers.{name}.weight": torch.zeros(2, 2) for name in ("x", "", "0.1")}
    with pytest.raises(TorchworkError, match="match no torchwork model"):
        spec_from_state_dict(odd | {"layers.weight": torch.zeros(1)})


def test_few_names_a_few_then_counts():
    assert few([]) == "none"
    assert few(["a", "b"]) == "'a', 'b'"
    assert few([f"k{i}" for i in range(300_001)]) == "'k0', 'k1', 'k2' and 299,998 more"
    assert "\n" not in few(["a\nb" * 100])
