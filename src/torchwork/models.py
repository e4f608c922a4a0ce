"""Step 2, building a model: the course's two linear models and a small MLP."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from torchwork.errors import TorchworkError

MAX_PARAMETERS = (
    100_000_000  # torchwork fits small models; this guards against typos like 64000,64000
)


class LinearRegressionModel(nn.Module):
    """The course's model_0: one weight and one bias as explicit parameters.

    `weights` is created before `bias`, so `torch.manual_seed(42)` gives weights 0.3367 and
    bias 0.1288 as in the course.
    """

    def __init__(self) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.randn(1, dtype=torch.float), requires_grad=True)
        self.bias = nn.Parameter(torch.randn(1, dtype=torch.float), requires_grad=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weights * x + self.bias

    def spec(self) -> dict[str, Any]:
        return {"kind": "params", "in_features": 1, "out_features": 1}


class LinearRegressionModelV2(nn.Module):
    """The course's model_1: `nn.Linear` does the weights and bias; any number of features."""

    def __init__(self, in_features: int = 1, out_features: int = 1) -> None:
        super().__init__()
        self.linear_layer = nn.Linear(in_features=in_features, out_features=out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.linear_layer
        if layer.out_features == 1 and x.dim() == 2:
            # One output is a matrix-vector product: BLAS runs it, and its backward, faster
            # than the one-column matrix product nn.Linear asks for (measured: a full-batch
            # step on 160,000 x 25 rows 3.4 against 5.0 ms).
            return torch.addmv(layer.bias, x, layer.weight[0]).unsqueeze(1)
        return layer(x)

    @property
    def feature_major_inputs(self) -> bool:
        """Whether a full batch trains faster stored feature by feature (engine.feature_major):
        with one output, whose matrix-vector products BLAS runs about twice as fast on such
        inputs; with several, the matrix products ran slower that way (218 against 209 ms
        for 1.6M rows and four classes)."""
        return self.linear_layer.out_features == 1

    def spec(self) -> dict[str, Any]:
        layer = self.linear_layer
        return {
            "kind": "linear",
            "in_features": layer.in_features,
            "out_features": layer.out_features,
        }


class MLP(nn.Module):
    """A small multilayer perceptron (Linear, ReLU, ..., Linear) for data that is not a line."""

    def __init__(
        self, in_features: int = 1, hidden: list[int] | None = None, out_features: int = 1
    ) -> None:
        super().__init__()
        hidden = [64, 64] if hidden is None else list(hidden)
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, out_features))
        self.layers = nn.Sequential(*layers)
        self.hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def spec(self) -> dict[str, Any]:
        first, last = self.layers[0], self.layers[-1]
        return {
            "kind": "mlp",
            "in_features": first.in_features,
            "out_features": last.out_features,
            "hidden": list(self.hidden),
        }


def build_model(
    kind: str = "params",
    in_features: int = 1,
    out_features: int = 1,
    hidden: list[int] | None = None,
) -> nn.Module:
    """Make a fresh model by name: params, linear or mlp.

    >>> build_model("linear", in_features=3)
    LinearRegressionModelV2(
      (linear_layer): Linear(in_features=3, out_features=1, bias=True)
    )
    """
    sizes = (
        [in_features, *(hidden or [64, 64]), out_features]
        if kind == "mlp"
        else [in_features, out_features]
    )
    parameters = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
    if parameters > MAX_PARAMETERS:
        raise TorchworkError(
            f"the {kind} model would have {parameters:,} parameters, more than {MAX_PARAMETERS:,}: "
            "use smaller --hidden sizes"
        )
    if kind == "params":
        if in_features != 1 or out_features != 1:
            raise TorchworkError(
                f"--model params learns one weight and one bias: one input and one output; this "
                f"data needs {in_features} input(s) and {out_features} output(s): use --model linear"
            )
        return LinearRegressionModel()
    if kind == "linear":
        return LinearRegressionModelV2(in_features, out_features)
    if kind == "mlp":
        return MLP(in_features, hidden, out_features)
    raise TorchworkError(f"unknown model '{kind}': use params, linear or mlp")


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a model from the dict its `spec()` returned (as stored in a model file)."""
    try:
        kind = spec["kind"]
        in_features = int(spec["in_features"])
        out_features = int(spec["out_features"])
        hidden = [int(h) for h in spec.get("hidden", [64, 64])]
    except (KeyError, TypeError, ValueError) as e:
        raise TorchworkError(
            f"the stored model description is incomplete or malformed: {e}"
        ) from None
    if in_features < 1 or out_features < 1 or any(h < 1 for h in hidden):
        raise TorchworkError("the stored model description has a layer size below 1")
    return build_model(kind, in_features, out_features, hidden)


def spec_from_state_dict(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Recognise which torchwork model a bare state_dict (a .pth file) belongs to."""
    keys = set(state)
    if keys == {"weights", "bias"}:
        return {"kind": "params", "in_features": 1, "out_features": 1}
    if keys == {"linear_layer.weight", "linear_layer.bias"}:
        out_features, in_features = state["linear_layer.weight"].shape
        return {"kind": "linear", "in_features": in_features, "out_features": out_features}
    weights = sorted(
        (int(k.split(".")[1]), v)
        for k, v in state.items()
        if k.startswith("layers.") and k.endswith(".weight")
    )
    if weights and all(k.startswith("layers.") for k in keys) and len(keys) == 2 * len(weights):
        shapes = [w.shape for _, w in weights]
        if all(len(s) == 2 for s in shapes):
            return {
                "kind": "mlp",
                "in_features": shapes[0][1],
                "out_features": shapes[-1][0],
                "hidden": [s[0] for s in shapes[:-1]],
            }
    raise TorchworkError(
        f"the state_dict's keys ({', '.join(sorted(keys)[:6])}) match no torchwork model"
    )


def model_spec(model: nn.Module) -> dict[str, Any]:
    spec = getattr(model, "spec", None)
    if spec is None:
        raise TorchworkError(
            f"{type(model).__name__} is not a torchwork model: pass a torchwork model"
        )
    return spec()
