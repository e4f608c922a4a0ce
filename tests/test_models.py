import pytest
import torch

from torchwork import (
    MLP,
    LinearRegressionModel,
    LinearRegressionModelV2,
    TorchworkError,
    build_model,
)
from torchwork.models import build_from_spec, spec_from_state_dict


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
