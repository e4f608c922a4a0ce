"""Step 2, building a model: the course's two linear models, a linear classifier and a
small MLP for rows; the course's TinyVGG and a small CNN for images."""

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
SHOWN_VALUES = 32  # a model with at most this many parameters shows their values in Jupyter


class _Shown:
    """Jupyter shows a torchwork model as what it is, its size and its layers, and a small
    one with its values (the course's `model_0.state_dict()`)."""

    def _repr_html_(self) -> str:
        from torchwork.notebook import model_html

        model: nn.Module = self  # type: ignore[assignment]  # a mixin of nn.Module models
        count = sum(p.numel() for p in model.parameters())
        tensors = [
            (
                name,
                tuple(t.shape),
                t.detach().cpu().reshape(-1).tolist() if count <= SHOWN_VALUES else None,
            )
            for name, t in model.state_dict().items()
        ]
        return model_html(
            type(model).__name__, describe(model_spec(model)), count, tensors, repr(model)
        )


class LinearRegressionModel(_Shown, nn.Module):
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


class _LinearLayer(_Shown, nn.Module):
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

    def l2_weights(self) -> list[nn.Parameter]:
        """The weights an L2 penalty applies to (optim.l2_penalty): all but the bias."""
        return [self.linear_layer.weight]

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


class MLP(_Shown, nn.Module):
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


class TabularModel(_Shown, nn.Module):
    """The model of a table of any kinds of columns: each block of the inputs (the number
    columns, the category columns, a text column, ...) goes through its kind's layer, and
    one combiner joins them into the head, linear or an MLP.

    A layer either gives features, which are joined side by side into the first linear layer
    (numbers, a text column's bag of n-grams, a picture's pooled features), or adds its own
    rows of that layer's weights (categories: one row per category, the function of a one-hot
    input times its weights). For a table of numbers alone this is exactly the linear model
    (`linear_layer`) or the MLP (`layers`), with their state_dict keys; the blocks' own
    parameters are under `blocks.<position>`.
    """

    def __init__(
        self,
        blocks: list[dict[str, Any]],
        out_features: int = 1,
        hidden: list[int] | None = None,
        task: Task = "regression",
        kind: str = "linear",
    ) -> None:
        from torchwork.kinds.encoder import kind_of

        super().__init__()
        mlp = kind == "mlp"
        hidden = list(hidden or []) if mlp else []
        width = hidden[0] if mlp else out_features
        layers = [kind_of(b["kind"]).layer(b, width) for b in blocks]
        self.blocks = nn.ModuleList(layers)
        dense = sum(layer.features_out for layer in layers if not layer.adds)
        added = sum(layer.inputs for layer in layers if layer.adds)
        # One layer over every input, as a one-hot model would initialise it; the columns of
        # the added blocks become their weights, the rest the first layer.
        first = nn.Linear(dense + added, width)
        if added:
            whole = first
            first = _uninitialised_linear(dense, width, whole.weight.device)
            with torch.no_grad():
                first.weight.copy_(whole.weight[:, :dense])
                first.bias.copy_(whole.bias)
                start = dense
                for layer in layers:
                    if layer.adds:
                        layer.weight.copy_(whole.weight[:, start : start + layer.inputs].t())
                        start += layer.inputs
        if mlp:
            # The MLP's layers, made in its order: the same draws as MLP for numbers alone.
            rest: list[nn.Module] = [first, nn.ReLU()]
            for a, b in itertools.pairwise(hidden):
                rest += [nn.Linear(a, b), nn.ReLU()]
            rest.append(nn.Linear(hidden[-1], out_features))
            self.layers = nn.Sequential(*rest)
        else:
            self.linear_layer = first
        self.kind, self.task, self.hidden = kind, task, hidden
        self.out_features, self.in_features = out_features, dense + added
        self.block_specs = [dict(b) for b in blocks]
        self._adds = [layer.adds for layer in layers]
        # a linear model whose first layer takes the inputs as they are (numbers): computed
        # as the linear model computes it
        self._plain = kind == "linear" and not any(
            list(layer.parameters()) for layer in layers if not layer.adds
        )

    @property
    def first_layer(self) -> nn.Linear:
        return self.layers[0] if self.kind == "mlp" else self.linear_layer

    @property
    def eval_rows(self) -> int:
        """Rows evaluated at a time: as few as a block's layer asks for (pictures: 32)."""
        from torchwork.data import EVAL_ROWS

        return min(getattr(layer, "eval_rows", EVAL_ROWS) for layer in self.blocks)

    @property
    def feature_major_inputs(self) -> bool:
        """As the linear model's (engine.feature_major): one output, numbers only."""
        return self.kind != "mlp" and self.out_features == 1 and not any(self._adds)

    def forward(self, X: Any) -> torch.Tensor:
        tensors = X.tensors
        dense = [
            layer(x)
            for layer, x, adds in zip(self.blocks, tensors, self._adds, strict=True)
            if not adds
        ]
        first = self.first_layer
        if not dense:
            h = first.bias.expand(
                tensors[0].shape[0] if isinstance(tensors[0], torch.Tensor) else len(tensors[0]), -1
            )
        else:
            x = dense[0] if len(dense) == 1 else torch.cat(dense, dim=1)
            if self._plain and first.out_features == 1:
                # As the linear model computes one output (_LinearLayer.forward): the same
                # sums, so a table of numbers gives the same bits as before the kinds (the
                # bias expanded to the rows: of none, addmv would give the bias's one).
                bias = first.bias.expand(x.shape[0])  # len() would fix it when exported
                h = torch.addmv(bias, x, first.weight[0]).unsqueeze(1)
            else:
                h = first(x)
        for layer, x, adds in zip(self.blocks, tensors, self._adds, strict=True):
            if adds:
                h = h + layer(x)
        if self.kind != "mlp":
            return h
        for layer in itertools.islice(self.layers, 1, None):
            h = layer(h)
        return h

    def l2_weights(self) -> list[nn.Parameter] | None:
        """The weights an L2 penalty applies to (optim.l2_penalty), as scikit-learn's logistic
        regression penalises a one-hot table's: every input's coefficients (a category's rows
        of weights), not the bias. None when the model is not linear in its inputs: an MLP,
        or a block whose layer learns its own features (text, pictures)."""
        if not self._plain:
            return None
        added = [
            p
            for layer, adds in zip(self.blocks, self._adds, strict=True)
            if adds
            for p in layer.parameters()
        ]
        return [self.first_layer.weight, *added]

    def input_weights(self) -> torch.Tensor:
        """The first layer's weights [width, inputs], its inputs in block order (a one-hot
        input for each category): a linear model's coefficients, as encoder.input_names
        names them."""
        first = self.first_layer.weight
        parts, start = [], 0
        for layer, adds in zip(self.blocks, self._adds, strict=True):
            if adds:
                parts.append(layer.weight.t())
            else:
                parts.append(first[:, start : start + layer.features_out])
                start += layer.features_out
        return torch.cat(parts, dim=1)

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "in_features": self.in_features,
            "out_features": self.out_features,
            "hidden": list(self.hidden),
            "task": self.task,
            "blocks": [dict(b) for b in self.block_specs],
        }

    def extra_repr(self) -> str:
        return f"task={self.task}"


def _uninitialised_linear(in_features: int, out_features: int, device: torch.device) -> nn.Linear:
    """An nn.Linear whose values are set by the caller: made without drawing from the random
    generator, so the layers made after it draw what they would have."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Initializing zero-element tensors is a no-op"
        return torch.nn.utils.skip_init(nn.Linear, in_features, out_features, device=device)


def build_model(
    kind: str = "params",
    in_features: int = 1,
    out_features: int = 1,
    hidden: list[int] | None = None,
    task: Task = "regression",
    image_size: int = 0,
    blocks: list[dict[str, Any]] | None = None,
) -> nn.Module:
    """Make a fresh model by name: params, linear or mlp for rows (a linear model for a
    binary or multiclass `task` is a LinearClassifier, logistic regression); tinyvgg or cnn
    for images of `in_features` channels, `image_size` pixels a side. With `blocks` (the
    specs of a table's blocks, kinds.encoder.Encoder.model_blocks), the TabularModel of a
    table of any kinds of columns, whose head the kind names (linear or mlp).

    >>> build_model("linear", in_features=3)
    LinearRegressionModelV2(
      (linear_layer): Linear(in_features=3, out_features=1, bias=True)
    )
    """
    entry = registry.MODELS.get(kind)
    if entry is None:
        raise ConfigError(f"unknown model {kind!r:.40}: use {', '.join(registry.MODELS)}")
    if task not in MODEL_TASKS:
        raise ConfigError(f"unknown task {task!r:.40}: use {', '.join(MODEL_TASKS)}")
    hidden = list(entry.hidden) if hidden is None else list(hidden)
    if len(hidden) > MAX_HIDDEN_LAYERS:
        raise ConfigError(
            f"the {kind} model would have {len(hidden):,} hidden layers, more than "
            f"{MAX_HIDDEN_LAYERS}: give fewer --hidden sizes"
        )
    if blocks is None and entry.needs:
        # A model of pictures alone: one column of them, the model's own layer
        blocks = [picture_block(kind, in_features, hidden, image_size)]
    if blocks is not None:
        return _tabular(kind, blocks, out_features, hidden, task)
    parameters = _parameter_count(kind, in_features, out_features, hidden, task, image_size)
    if parameters > MAX_PARAMETERS:
        raise ConfigError(
            f"the {kind} model would have {parameters:,} parameters, more than {MAX_PARAMETERS:,}: "
            "use smaller --hidden sizes"
        )
    return entry.load()(in_features, out_features, hidden, task, image_size)


def picture_block(kind: str, channels: int, widths: list[int], image_size: int) -> dict[str, Any]:
    """The block spec of the one column of the model `kind` names by its layer (cnn,
    tinyvgg: pictures of `channels` and `image_size`, its widths)."""
    from torchwork.kinds.encoder import kind_of

    return kind_of(registry.MODELS[kind].needs).spec_for(kind, channels, widths, image_size)


def _tabular(
    kind: str, blocks: list[dict[str, Any]], out_features: int, hidden: list[int], task: Task
) -> TabularModel:
    """The TabularModel of these blocks, after the checks run applies before building it."""
    from torchwork.kinds.encoder import kind_of

    if kind not in BLOCK_KINDS:
        raise ConfigError(
            f"--model {kind} learns the line's one weight and bias: use --model "
            f"{' or '.join(BLOCK_KINDS[:2])} for a table"
        )
    needs = registry.MODELS[kind].needs
    if needs and not any(b["kind"] == needs for b in blocks):
        raise ConfigError(
            f"--model {kind} is the layer of a column of {registry.KINDS[needs].noun}, and this "
            f"data has none: use --model {' or '.join(BLOCK_KINDS[:2])}"
        )
    for block in blocks:
        problem = kind_of(block["kind"]).check_spec(block)
        if problem:
            raise ConfigError(problem)
    head = hidden if kind == "mlp" else []
    spec = {"kind": kind, "out_features": out_features, "hidden": head, "task": task}
    parameters = sum(
        math.prod(shape) for shape in _block_shapes(spec | {"blocks": blocks}).values()
    )
    if parameters > MAX_PARAMETERS:
        raise ConfigError(
            f"the {kind} model would have {parameters:,} parameters, more than "
            f"{MAX_PARAMETERS:,}: use smaller --hidden sizes, or fewer categories "
            "(--max-categories)"
        )
    return TabularModel(blocks, out_features, head, task, kind)


def _parameter_count(
    kind: str, n_in: int, n_out: int, hidden: list[int], task: Task, image_size: int
) -> int:
    """How many numbers a model would hold, found without allocating them (_shapes)."""
    spec = {"kind": kind, "in_features": n_in, "out_features": n_out, "hidden": hidden}
    return sum(
        math.prod(shape)
        for shape in _shapes({**spec, "task": task, "image_size": image_size}).values()
    )


# The builders registry.MODELS names:
# (in_features, out_features, hidden, task, image_size) -> a model.
def build_params(
    in_features: int, out_features: int, hidden: list[int], task: Task, image_size: int = 0
) -> nn.Module:
    if in_features != 1 or out_features != 1:
        raise ConfigError(
            f"--model params learns one weight and one bias: one input and one output; this "
            f"data needs {in_features} input(s) and {out_features} output(s): use --model linear"
        )
    return LinearRegressionModel()


def build_linear(
    in_features: int, out_features: int, hidden: list[int], task: Task, image_size: int = 0
) -> nn.Module:
    if task != "regression":
        return LinearClassifier(in_features, out_features, task)
    return LinearRegressionModelV2(in_features, out_features)


def build_mlp(
    in_features: int, out_features: int, hidden: list[int], task: Task, image_size: int = 0
) -> nn.Module:
    return MLP(in_features, hidden, out_features)


def build_tinyvgg(
    in_features: int, out_features: int, hidden: list[int], task: Task, image_size: int
) -> nn.Module:
    """The course's TinyVGG on one column of pictures of `in_features` channels."""
    block = picture_block("tinyvgg", in_features, hidden, image_size)
    return _tabular("tinyvgg", [block], out_features, hidden, task)


def build_cnn(
    in_features: int, out_features: int, hidden: list[int], task: Task, image_size: int
) -> nn.Module:
    """The small CNN (kinds/image/layers.py) on one column of pictures."""
    return _tabular(
        "cnn", [picture_block("cnn", in_features, hidden, image_size)], out_features, hidden, task
    )


def parse_spec(spec: Any, source: str = "the model description") -> dict[str, Any]:
    """A stored model description, checked against the limits `run` applies before anything
    is built; complete: kind, in_features, out_features, hidden ([] unless an mlp), task,
    and for a table's model its blocks.

    Files written before descriptions named the task read as regression models.
    """
    if not isinstance(spec, dict):
        raise ModelFileError(f"{source} is not a JSON object")
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in MODELS:
        raise ModelFileError(f"{source} names no known model kind (got {kind!r:.40})")
    if "blocks" not in spec and registry.MODELS[kind].needs:
        from torchwork.kinds.legacy import upgrade_spec

        spec = upgrade_spec(spec, None)  # a picture model written before the kinds of data
    if "blocks" in spec:
        return _parse_block_spec(spec, kind, source)
    sizes = {}
    for key in ("in_features", "out_features"):
        value = spec.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelFileError(f"{source} has no valid '{key}' (got {value!r:.40})")
        sizes[key] = value
    if kind == "params" and (sizes["in_features"], sizes["out_features"]) != (1, 1):
        raise ModelFileError(f"{source} gives a params model more than one input or output")
    entry = registry.MODELS[kind]
    hidden: Any = spec.get("hidden", list(entry.hidden)) if kind in HIDDEN_KINDS else []
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
    parsed = {"kind": kind, **sizes, "hidden": hidden, "task": task}
    parameters = sum(math.prod(shape) for shape in _shapes(parsed).values())
    if parameters > MAX_PARAMETERS:
        raise ModelFileError(
            f"{source} says {parameters:,} parameters, more than {MAX_PARAMETERS:,}"
        )
    return parsed


HIDDEN_KINDS = ("mlp", "tinyvgg", "cnn")  # the kinds whose --hidden sizes shape them
# the model kinds of a table of any kinds of columns: a linear head or an MLP; cnn and tinyvgg
# name the layer of its pictures, with a linear head
BLOCK_KINDS = tuple(name for name, entry in registry.MODELS.items() if entry.columns)
MAX_BLOCKS = 10_000  # blocks of a table's model: one per text or picture column at most


def _parse_block_spec(spec: dict[str, Any], kind: str, source: str) -> dict[str, Any]:
    """parse_spec of a table's model: its blocks checked by their kinds."""
    from torchwork.kinds.encoder import kind_of

    if kind not in BLOCK_KINDS:
        raise ModelFileError(f"{source} gives a {kind} model blocks of columns")
    blocks = spec["blocks"]
    if not isinstance(blocks, list) or not blocks or len(blocks) > MAX_BLOCKS:
        raise ModelFileError(f"{source} has no valid list of blocks")
    for block in blocks:
        name = block.get("kind") if isinstance(block, dict) else None
        if not isinstance(name, str) or name not in registry.KINDS:
            raise ModelFileError(f"{source} has a block of no known kind (got {name!r:.40})")
        problem = kind_of(name).check_spec(block)
        if problem:
            raise ModelFileError(f"{source} describes {problem}")
    out = spec.get("out_features")
    if isinstance(out, bool) or not isinstance(out, int) or out < 1:
        raise ModelFileError(f"{source} has no valid 'out_features' (got {out!r:.40})")
    hidden: Any = spec.get("hidden", []) if kind == "mlp" else []
    if kind == "mlp" and (
        not isinstance(hidden, list)
        or not 1 <= len(hidden) <= MAX_HIDDEN_LAYERS
        or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden)
    ):
        raise ModelFileError(f"{source} has no valid hidden layer sizes (got {hidden!r:.40})")
    task = spec.get("task", "regression")
    if not isinstance(task, str) or task not in MODEL_TASKS:
        raise ModelFileError(f"{source} names no known task (got {task!r:.40})")
    parsed = {"kind": kind, "out_features": out, "hidden": hidden, "task": task}
    parsed["blocks"] = [dict(b) for b in blocks]
    try:
        shapes = _block_shapes(parsed)
    except (TorchworkError, KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{source} describes a model torchwork would not build: {e}") from None
    parameters = sum(math.prod(shape) for shape in shapes.values())
    if parameters > MAX_PARAMETERS:
        raise ModelFileError(
            f"{source} says {parameters:,} parameters, more than {MAX_PARAMETERS:,}"
        )
    with torch.device("meta"):
        parsed["in_features"] = TabularModel(parsed["blocks"], out, hidden, task, kind).in_features
    return parsed


def _block_shapes(spec: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes of a table's model, found by building it without memory."""
    with torch.device("meta"):
        model = TabularModel(
            spec["blocks"], spec["out_features"], spec["hidden"], spec["task"], spec["kind"]
        )
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def parameter_shapes(
    spec: dict[str, Any], source: str = "the model description"
) -> dict[str, tuple[int, ...]]:
    """The names and shapes of the parameters of the model a description describes, in
    state_dict order, found without building it."""
    return _shapes(parse_spec(spec, source))


def _shapes(spec: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    # The state_dict layout of each class above; tests check it against the classes.
    if "blocks" in spec:
        return _block_shapes(spec)
    kind, hidden = spec["kind"], spec["hidden"]
    n_in, n_out = spec["in_features"], spec["out_features"]
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
    return build_model(
        s["kind"],
        s["in_features"],
        s["out_features"],
        s["hidden"],
        s["task"],
        s.get("image_size", 0),
        s.get("blocks"),
    )


def spec_from_state_dict(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Recognise which torchwork model a bare state_dict (a .pth file) belongs to."""
    keys = set(state)
    spec = None
    if "normalize.mean" in keys or any(k.startswith("blocks.") for k in keys):
        raise ModelFileError(
            "this .pth file holds the weights alone of a model of a table's columns (or of "
            "images), without their encoding (image size, categories, class names): use the "
            "run's model.safetensors"
        )
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
    if "blocks" in s:
        inputs += " (" + ", ".join(_block_words(b) for b in s["blocks"]) + ")"
    if s["kind"] == "params":
        return f"linear regression (LinearRegressionModel, the course's model_0) on {inputs}"
    if s["kind"] == "linear" and "blocks" in s:
        name = {
            "regression": "linear regression",
            "binary": "logistic regression",
            "multiclass": f"multinomial logistic regression ({classes} classes)",
        }[task]
        return f"{name} (TabularModel) on {inputs}"
    if s["kind"] == "linear":
        name = {
            "regression": "linear regression (LinearRegressionModelV2)",
            "binary": "logistic regression (LinearClassifier)",
            "multiclass": f"multinomial logistic regression (LinearClassifier, {classes} classes)",
        }[task]
        return f"{name} on {inputs}"
    layers = ", ".join(map(str, s["hidden"]))
    needs = registry.MODELS[s["kind"]].needs
    if needs:  # a model named by its layer of one kind of column
        from torchwork.kinds.encoder import kind_of

        block = next(b for b in s["blocks"] if b["kind"] == needs)
        what = kind_of(needs).spec_words(block)
        if len(s["blocks"]) > 1:
            what += f" and {inputs}"
        layers = ", ".join(map(str, block.get("widths", [])))
        if s["kind"] == "tinyvgg":
            return f"TinyVGG ({layers} channels) for {purpose} of {what}"
        return f"CNN (blocks of {layers} channels) for {purpose} of {what}"
    return f"MLP (hidden layers {layers}) for {purpose} on {inputs}"


def _block_words(block: dict[str, Any]) -> str:
    """A block of a model description in a few words: "3 number columns"."""
    from torchwork.kinds.encoder import kind_of

    return kind_of(block["kind"]).spec_words(block)


def model_spec(model: nn.Module) -> dict[str, Any]:
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ConfigError(
            f"{type(model).__name__} is not a torchwork model: pass a torchwork model"
        )
    return spec()
