"""Step 2, building a model: the course's two linear models, a linear classifier and a
small MLP."""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import nn

from torchwork import registry
from torchwork.config import MAX_HIDDEN_LAYERS, MODELS
from torchwork.errors import ConfigError, ModelFileError, TorchworkError, few
from torchwork.registry import MODEL_TASKS, Task

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


class _LinearLayer(nn.Module):
    """One `nn.Linear` named linear_layer, as the course's model_1 (its state_dict keys)."""

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


class LinearRegressionModelV2(_LinearLayer):
    """The course's model_1: `nn.Linear` does the weights and bias; any number of features."""


class LinearClassifier(_LinearLayer):
    """Logistic regression: `nn.Linear` gives one logit per class (a single one for two
    classes), turned into probabilities by the loss (BCEWithLogits, CrossEntropy) and by
    `predict`. The same parameters as LinearRegressionModelV2; its description adds the task.
    """

    def __init__(self, in_features: int = 1, out_features: int = 1, task: Task = "binary") -> None:
        super().__init__(in_features, out_features)
        self.task = task

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "task": self.task}

    def extra_repr(self) -> str:
        return f"task={self.task}"


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
    task: Task = "regression",
) -> nn.Module:
    """Make a fresh model by name: params, linear or mlp; a linear model for a binary or
    multiclass `task` is a LinearClassifier (logistic regression).

    >>> build_model("linear", in_features=3)
    LinearRegressionModelV2(
      (linear_layer): Linear(in_features=3, out_features=1, bias=True)
    )
    """
    hidden = [64, 64] if hidden is None else list(hidden)
    if kind == "mlp" and len(hidden) > MAX_HIDDEN_LAYERS:
        raise ConfigError(
            f"the mlp model would have {len(hidden):,} hidden layers, more than "
            f"{MAX_HIDDEN_LAYERS}: give fewer --hidden sizes"
        )
    sizes = [in_features, *hidden, out_features] if kind == "mlp" else [in_features, out_features]
    parameters = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
    if parameters > MAX_PARAMETERS:
        raise ConfigError(
            f"the {kind} model would have {parameters:,} parameters, more than {MAX_PARAMETERS:,}: "
            "use smaller --hidden sizes"
        )
    if task not in MODEL_TASKS:
        raise ConfigError(f"unknown task {task!r:.40}: use {', '.join(MODEL_TASKS)}")
    entry = registry.MODELS.get(kind)
    if entry is None:
        raise ConfigError(f"unknown model {kind!r:.40}: use {', '.join(registry.MODELS)}")
    return entry.load()(in_features, out_features, hidden, task)


# The builders registry.MODELS names: (in_features, out_features, hidden, task) -> a model.
def build_params(in_features: int, out_features: int, hidden: list[int], task: Task) -> nn.Module:
    if in_features != 1 or out_features != 1:
        raise ConfigError(
            f"--model params learns one weight and one bias: one input and one output; this "
            f"data needs {in_features} input(s) and {out_features} output(s): use --model linear"
        )
    return LinearRegressionModel()


def build_linear(in_features: int, out_features: int, hidden: list[int], task: Task) -> nn.Module:
    if task != "regression":
        return LinearClassifier(in_features, out_features, task)
    return LinearRegressionModelV2(in_features, out_features)


def build_mlp(in_features: int, out_features: int, hidden: list[int], task: Task) -> nn.Module:
    return MLP(in_features, hidden, out_features)


def parse_spec(spec: Any, source: str = "the model description") -> dict[str, Any]:
    """A stored model description, checked against the limits `run` applies before anything
    is built; complete: kind, in_features, out_features, hidden ([] unless an mlp), task.

    Files written before descriptions named the task read as regression models.
    """
    if not isinstance(spec, dict):
        raise ModelFileError(f"{source} is not a JSON object")
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in MODELS:
        raise ModelFileError(f"{source} names no known model kind (got {kind!r:.40})")
    sizes = {}
    for key in ("in_features", "out_features"):
        value = spec.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelFileError(f"{source} has no valid '{key}' (got {value!r:.40})")
        sizes[key] = value
    if kind == "params" and (sizes["in_features"], sizes["out_features"]) != (1, 1):
        raise ModelFileError(f"{source} gives a params model more than one input or output")
    hidden: Any = spec.get("hidden", [64, 64]) if kind == "mlp" else []
    if not isinstance(hidden, list):
        raise ModelFileError(f"{source} has no valid hidden layer sizes (got {hidden!r:.40})")
    if len(hidden) > MAX_HIDDEN_LAYERS:
        raise ModelFileError(
            f"{source} says {len(hidden):,} hidden layers, more than {MAX_HIDDEN_LAYERS}"
        )
    if not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden):
        raise ModelFileError(f"{source} has a hidden layer size that is not a whole number >= 1")
    task = spec.get("task", "regression")
    if not isinstance(task, str) or task not in MODEL_TASKS:
        raise ModelFileError(f"{source} names no known task (got {task!r:.40})")
    parameters = sum(math.prod(shape) for shape in _shapes(kind, sizes, hidden).values())
    if parameters > MAX_PARAMETERS:
        raise ModelFileError(
            f"{source} says {parameters:,} parameters, more than {MAX_PARAMETERS:,}"
        )
    return {"kind": kind, **sizes, "hidden": hidden, "task": task}


def parameter_shapes(
    spec: dict[str, Any], source: str = "the model description"
) -> dict[str, tuple[int, ...]]:
    """The names and shapes of the parameters of the model a description describes, in
    state_dict order, found without building it."""
    s = parse_spec(spec, source)
    return _shapes(s["kind"], s, s["hidden"])


def _shapes(kind: str, sizes: dict[str, int], hidden: list[int]) -> dict[str, tuple[int, ...]]:
    # The state_dict layout of each class above; tests check it against the classes.
    n_in, n_out = sizes["in_features"], sizes["out_features"]
    if kind == "params":
        return {"weights": (1,), "bias": (1,)}
    if kind == "linear":
        return {"linear_layer.weight": (n_out, n_in), "linear_layer.bias": (n_out,)}
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (a, b) in enumerate(itertools.pairwise([n_in, *hidden, n_out])):
        shapes[f"layers.{2 * i}.weight"] = (b, a)
        shapes[f"layers.{2 * i}.bias"] = (b,)
    return shapes


def check_tensors(
    spec: dict[str, Any], state: dict[str, torch.Tensor], source: str = "the file"
) -> None:
    """Raise unless `state` holds exactly the tensors `spec` describes: their count, names
    and shapes. Nothing is built, and a message names a few tensors, then how many more."""
    expected = parameter_shapes(spec, f"the model description in {source}")
    if len(state) != len(expected) or state.keys() != expected.keys():
        missing = [k for k in expected if k not in state]
        extra = [k for k in state if k not in expected]
        raise ModelFileError(
            f"{source} does not match its model description: it holds {len(state):,} "
            f"tensor(s), the description {len(expected):,}; missing {few(missing)}; "
            f"unexpected {few(extra)}"
        )
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise ModelFileError(
                f"{source} does not match its model description: {few([name])} has shape "
                f"{list(state[name].shape)}, the description says {list(shape)}"
            )


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a model from the dict its `spec()` returned (as stored in a model file)."""
    s = parse_spec(spec, "the stored model description")
    return build_model(s["kind"], s["in_features"], s["out_features"], s["hidden"], s["task"])


def spec_from_state_dict(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Recognise which torchwork model a bare state_dict (a .pth file) belongs to."""
    keys = set(state)
    spec = None
    if keys == {"weights", "bias"}:
        spec = {"kind": "params", "in_features": 1, "out_features": 1}
    elif keys == {"linear_layer.weight", "linear_layer.bias"}:
        weight = state["linear_layer.weight"]
        if weight.dim() == 2:
            out_features, in_features = weight.shape
            spec = {"kind": "linear", "in_features": in_features, "out_features": out_features}
    else:
        weights = [state.get(f"layers.{2 * i}.weight") for i in range(len(keys) // 2)]
        if weights and all(w is not None and w.dim() == 2 for w in weights):
            spec = {
                "kind": "mlp",
                "in_features": weights[0].shape[1],
                "out_features": weights[-1].shape[0],
                "hidden": [w.shape[0] for w in weights[:-1]],
            }
    if spec is not None:
        parse_spec(spec, "the state_dict")  # too many layers or parameters: said as such
        try:
            check_tensors(spec, state)
            return spec
        except TorchworkError:
            pass
    raise ModelFileError(f"the state_dict's keys ({few(sorted(keys))}) match no torchwork model")


def describe(spec: dict[str, Any], task: Task | None = None) -> str:
    """What a model is, in words: 'logistic regression (LinearClassifier) on 3 inputs'.

    `task` (from the stored preprocessing) wins over the description's, which files
    written before descriptions named the task lack.
    """
    s = parse_spec(spec)
    task = task if task in MODEL_TASKS else s["task"]
    classes = 2 if task == "binary" else s["out_features"]
    purpose = {
        "regression": "regression",
        "binary": "binary classification",
        "multiclass": f"{classes}-class classification",
    }[task]
    n = s["in_features"]
    inputs = f"{n} input{'s' if n != 1 else ''}"
    if s["kind"] == "params":
        return f"linear regression (LinearRegressionModel, the course's model_0) on {inputs}"
    if s["kind"] == "linear":
        name = {
            "regression": "linear regression (LinearRegressionModelV2)",
            "binary": "logistic regression (LinearClassifier)",
            "multiclass": f"multinomial logistic regression (LinearClassifier, {classes} classes)",
        }[task]
        return f"{name} on {inputs}"
    layers = ", ".join(map(str, s["hidden"]))
    return f"MLP (hidden layers {layers}) for {purpose} on {inputs}"


def model_spec(model: nn.Module) -> dict[str, Any]:
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ConfigError(
            f"{type(model).__name__} is not a torchwork model: pass a torchwork model"
        )
    return spec()
