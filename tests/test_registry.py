"""Every name a run can be given builds what its registry entry says, and the command line
offers exactly the registry's names."""

import pytest
import torch
from torch import nn

from torchwork import registry
from torchwork.cli.parser import build_parser
from torchwork.models import build_model
from torchwork.optim import make_loss, make_optimizer


@pytest.mark.parametrize("name", sorted(registry.LOSSES))
def test_each_loss_builds_for_its_tasks(name):
    entry = registry.LOSSES[name]
    for task in entry.tasks:
        assert type(make_loss(name, task)) is entry.load()
    for task in set(registry.MODEL_TASKS) - set(entry.tasks):
        with pytest.raises(Exception, match="does not fit"):
            make_loss(name, task)


@pytest.mark.parametrize("name", sorted(registry.OPTIMIZERS))
def test_each_optimizer_builds_and_steps(name):
    weight = nn.Parameter(torch.tensor([1.0]))
    optimizer = make_optimizer(name, [weight], lr=0.1)
    assert isinstance(optimizer, registry.OPTIMIZERS[name].load())

    def closure():
        optimizer.zero_grad()
        loss = (weight**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    assert weight.item() < 1.0


@pytest.mark.parametrize("kind", sorted(registry.MODELS))
def test_each_model_kind_builds(kind):
    if registry.MODELS[kind].needs == "image":  # grey 16 x 16 pictures, two classes
        from torchwork.kinds.base import Inputs

        model = build_model(kind, in_features=1, out_features=1, task="binary", image_size=16)
        assert model(Inputs([torch.zeros(4, 1, 16, 16, dtype=torch.uint8)])).shape == (4, 1)
        assert model.spec()["blocks"][0]["image_size"] == 16
        return
    model = build_model(kind, in_features=1, out_features=1)
    assert model(torch.zeros(4, 1)).shape == (4, 1)


def test_the_command_line_offers_the_registry_names():
    actions = {
        a.dest: a for a in build_parser()._subparsers._group_actions[0].choices["run"]._actions
    }
    assert list(actions["model.kind"].choices) == list(registry.MODELS)
    assert list(actions["train.loss"].choices) == ["auto", *registry.LOSSES]
    assert list(actions["train.optimizer"].choices) == ["auto", *registry.OPTIMIZERS]


def test_learned_line_reads_both_line_models_and_nothing_else():
    assert registry.learned_line({"weights": [0.5], "bias": [0.25]}) == (0.5, 0.25)
    linear = {"linear_layer.weight": [0.5], "linear_layer.bias": [0.25]}
    assert registry.learned_line(linear) == (0.5, 0.25)
    assert (
        registry.learned_line({"linear_layer.weight": [0.5, 1.0], "linear_layer.bias": [0]}) is None
    )
    assert registry.learned_line({"weights": 0.5, "bias": [0.25]}) is None  # a hand-edited file
    mlp = build_model("mlp", in_features=1, out_features=1, hidden=[1])
    assert (
        registry.learned_line({k: v.reshape(-1).tolist() for k, v in mlp.state_dict().items()})
        is None
    )
