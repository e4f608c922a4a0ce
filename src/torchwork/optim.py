"""Step 2: the loss function and the optimizer, by name (registry), and the optimizer step
the training loop takes without torch's per-step wrapper."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from torchwork import registry
from torchwork.errors import ConfigError
from torchwork.registry import Task


def make_loss(name: str = "l1", task: Task = "regression") -> nn.Module:
    """The loss function by name (registry.LOSSES): l1 (nn.L1Loss, the course's), mse or
    huber for regression; bce (BCEWithLogitsLoss) for binary and ce (CrossEntropyLoss) for
    multiclass; auto picks mse, bce or ce by the task."""
    if task not in registry.AUTO_LOSS:
        raise ConfigError(f"unknown task '{task}': use {', '.join(registry.MODEL_TASKS)}")
    if name == "auto":
        name = registry.AUTO_LOSS[task]
    entry = registry.LOSSES.get(name)
    if entry is None:
        raise ConfigError(f"unknown loss '{name}': use {', '.join(registry.LOSSES)} or auto")
    if task not in entry.tasks:
        fitting = [n for n, e in registry.LOSSES.items() if task in e.tasks]
        raise ConfigError(
            f"--loss {name} does not fit a {task} task: use --loss {' or '.join(fitting)} (or auto)"
        )
    return entry.load()()


def l2_penalty(model: nn.Module, C: float, rows: int) -> Callable[[], torch.Tensor]:
    """scikit-learn's L2 penalty of logistic regression as a term of the mean loss: its
    objective, C times the summed loss plus half the squared weights, divided by C * rows,
    is the mean loss plus ||weights||² / (2 C rows). The weights are the model's
    `l2_weights()`, never the bias. Returns the penalty as a function of the weights as they
    are when it is called, to add to each evaluation of the loss.

    >>> penalty = l2_penalty(model, C=1.0, rows=len(X_train))  # doctest: +SKIP
    >>> loss = loss_fn(model(X_train), y_train) + penalty()  # doctest: +SKIP
    """
    weights = getattr(model, "l2_weights", lambda: None)()
    if not weights:
        raise ConfigError(
            f"an L2 penalty (--l2-c) applies to a linear model's weights, and "
            f"{type(model).__name__} is no such model: use --l2-c none"
        )
    if not (math.isfinite(C) and C > 0) or rows < 1:
        raise ConfigError(f"--l2-c must be a number above 0 and the rows at least 1 (got {C})")
    divisor = 2 * C * rows

    def penalty() -> torch.Tensor:
        total = weights[0].square().sum()
        for weight in weights[1:]:
            total = total + weight.square().sum()
        return total / divisor

    return penalty


def make_optimizer(
    name: str, params: Iterable[nn.Parameter], lr: float = 0.01, momentum: float = 0.0
) -> torch.optim.Optimizer:
    """The optimizer by name (registry.OPTIMIZERS): sgd (the course's, with optional
    momentum), adam, adamw, or lbfgs (L-BFGS with a strong-Wolfe line search, one iteration
    per epoch, full batch)."""
    params = list(params)
    _eager_optimizer_methods()
    # The multi-tensor (foreach) kernels pay off on GPUs; on the CPU PyTorch would pick the
    # per-tensor loop anyway, and saying so up front skips that check on every step.
    foreach = bool(params) and params[0].is_cuda
    # Adam's fused kernel updates every parameter in one call: on the CPU a step of the
    # default MLP took 150 us against 420 us per tensor (and 300 us multi-tensor).
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
    entry = registry.OPTIMIZERS.get(name)
    if entry is None:
        raise ConfigError(f"unknown optimizer '{name}': use {' or '.join(registry.OPTIMIZERS)}")
    settings = {"momentum": momentum, "foreach": foreach, "fused": fused}
    return entry.load()(params, lr=lr, **{k: settings[k] for k in entry.options})


def optimizer_for(
    name: str, model: nn.Module, lr: float = 0.01, momentum: float = 0.0, dense: bool = False
) -> torch.optim.Optimizer | Optimizers:
    """The optimizer of a model by name (make_optimizer). A layer whose gradients are sparse
    (a text column's bag of n-gram embeddings: a step touches only the rows of the batch's
    ids) gets SparseAdam beside Adam for the rest, both at `lr`; with another optimizer,
    which takes no sparse gradients, such layers compute dense ones, as they do with `dense`
    (processes on GPUs: NCCL reduces no sparse gradients). A 2^20-row bag trained on 5,600
    short texts took 31 s an epoch with dense Adam, 0.5 s with SparseAdam."""
    sparse_modules = [
        m for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse
    ]
    if not sparse_modules:
        return make_optimizer(name, model.parameters(), lr=lr, momentum=momentum)
    if name != "adam" or dense:
        for module in sparse_modules:
            module.sparse = False
        return make_optimizer(name, model.parameters(), lr=lr, momentum=momentum)
    sparse = [p for m in sparse_modules for p in m.parameters()]
    taken = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if id(p) not in taken]
    parts: list[torch.optim.Optimizer] = [make_optimizer("adam", dense, lr=lr)] if dense else []
    _eager_optimizer_methods()
    parts.append(torch.optim.SparseAdam(sparse, lr=lr))
    return Optimizers(parts)


class Optimizers:
    """Several optimizers stepped as one (Adam and SparseAdam): their parameter groups in one
    list (a learning-rate schedule sets them all), one state dict, one step."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]) -> None:
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for o in self.optimizers for group in o.param_groups]

    @property
    def defaults(self) -> dict[str, Any]:
        return self.optimizers[0].defaults

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer_step(optimizer)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        parts = state.get("optimizers") if isinstance(state, dict) else None
        if not isinstance(parts, list) or len(parts) != len(self.optimizers):
            raise ValueError("the checkpoint's optimizer state is not this run's optimizers'")
        for optimizer, part in zip(self.optimizers, parts, strict=True):
            optimizer.load_state_dict(part)


class LBFGS(torch.optim.LBFGS):
    """torch's L-BFGS (strong-Wolfe line search), one iteration per `step`, that reuses the
    evaluation its previous step's line search ended on.

    Each step starts by evaluating the closure at the current parameters, where the line
    search of the step before usually evaluated it already; with the same parameters the
    loss and gradients are the same numbers, so they are taken from that evaluation: about
    one pass over the data per epoch instead of two, with identical results.

    A step whose line search found no lower loss (at the optimum, as far as float32 tells)
    leaves the parameters where they were (a step of length 0); the next step would then
    repeat it exactly (the same parameters, gradient, memory and direction, so the same 25
    evaluations of the same points) and is skipped: the same parameters and losses, without
    the passes. On a 200,000-row multiclass table such epochs took 0.23 s each, against 0.04.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float = 1.0) -> None:
        # max_eval bounds the evaluations of a step, the line search's included: torch's
        # default for one iteration (1 * 5 // 4) would leave the line search none at all.
        super().__init__(params, lr=lr, max_iter=1, max_eval=25, line_search_fn="strong_wolfe")
        self._last: tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor | None]] | None = None

    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        params = self._params

        def remembered() -> torch.Tensor:
            last = self._last
            if last is not None and all(
                torch.equal(p, q) for p, q in zip(params, last[0], strict=True)
            ):
                for p, grad in zip(params, last[2], strict=True):
                    p.grad = None if grad is None else grad.clone()
                return last[1]
            loss = closure()
            self._last = (
                [p.detach().clone() for p in params],
                loss.detach(),
                [None if p.grad is None else p.grad.clone() for p in params],
            )
            return loss

        t = self.state[params[0]].get("t")
        if t is not None and float(t) == 0.0:
            with torch.enable_grad():
                return remembered()
        return super().step(remembered)


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """L-BFGS evaluates the loss several times per step, through a closure."""
    return isinstance(optimizer, torch.optim.LBFGS)


_EAGER = False


def _eager_optimizer_methods() -> None:
    """Mark torch.optim's bookkeeping methods as already excluded from torch.compile.

    `Optimizer.__init__`, `zero_grad`, `state_dict` and `load_state_dict` are wrapped so
    that their first call imports torch._dynamo (about as long as `import torch` itself,
    2 to 3 s here) only to exclude them from compilation. torchwork trains eagerly and
    never compiles, so the methods are marked as their own excluded version: they run
    unchanged, without that import. (`step` is handled by `optimizer_step`.)
    """
    global _EAGER
    if _EAGER:
        return
    _EAGER = True
    for name in ("add_param_group", "zero_grad", "state_dict", "load_state_dict"):
        method = getattr(getattr(torch.optim.Optimizer, name), "__wrapped__", None)
        if method is not None and not hasattr(method, "__dynamo_disable"):
            method.__dynamo_disable = method  # type: ignore[attr-defined]


def optimizer_step(optimizer: torch.optim.Optimizer | Optimizers) -> None:
    """optimizer.step(), the same update, without torch's wrapper where it adds nothing.

    torch wraps every optimizer's `step` to import torch._dynamo at each call (2 to 3 s the
    first time here, to mark graph breaks for torch.compile), to name the call for the
    profiler and to run step hooks. torchwork never compiles: with no hook registered,
    the function inside, run without gradients as the wrapper runs it, is the whole step.
    """
    from torch.optim import optimizer as module

    if isinstance(optimizer, Optimizers):
        optimizer.step()
        return
    hooked = (
        optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
        or module._global_optimizer_pre_hooks
        or module._global_optimizer_post_hooks
        or optimizer.defaults.get("differentiable")
    )
    inner = _inner_step(type(optimizer))
    if hooked or inner is None:
        optimizer.step()
        return
    with torch.no_grad():
        inner(optimizer)


def _inner_step(kind: type) -> Callable[..., Any] | None:
    """The function torch's step wrappers wrap, for this optimizer class (None if unknown)."""
    if kind not in _INNER_STEPS:
        import inspect

        step = kind.step
        inner = inspect.unwrap(step)
        _INNER_STEPS[kind] = inner if inner is not step else None
    return _INNER_STEPS[kind]


_INNER_STEPS: dict[type, Callable[..., Any] | None] = {}


def learning_rate_schedule(name: str, lr: float, epochs: int) -> Callable[[int], float] | None:
    """The learning rate of each epoch: None for a constant one ("none"); "cosine" decays
    it from `lr` to near 0 over `epochs` along half a cosine (SGDR without restarts). A
    function of the epoch alone, so a resumed run sets the same rates without state."""
    if name == "none":
        return None
    if name == "cosine":
        return lambda epoch: lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    raise ConfigError(f"unknown learning-rate schedule {name!r:.40}: use none or cosine")
