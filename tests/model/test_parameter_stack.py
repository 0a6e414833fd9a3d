"""One flat parameter for groups of modules: rows numbered through the groups, each
module rebound to its rows, and gradients from each group's views landing in its rows."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from app.model.parameter_stack import ParameterStack


def _conv() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1))


def test_groups_of_different_architectures_share_one_parameter() -> None:
    torch.manual_seed(0)
    convs = [_conv(), _conv()]
    linear = [nn.Linear(4, 2)]
    originals = [
        {name: p.detach().clone() for name, p in m.named_parameters()} for m in convs + linear
    ]
    stack = ParameterStack(convs, linear)

    assert stack.count == 3
    assert stack.names(0) == ["0.weight", "0.bias"]
    assert stack.names(1) == ["weight", "bias"]
    conv_weights, linear_weights = stack.weights()
    assert conv_weights["0.weight"].shape == (2, 3, 2, 3, 3)
    assert linear_weights["weight"].shape == (1, 2, 4)
    # Parameter by parameter within a group, the modules as the leading dimension; rows
    # numbered through the groups, so the linear layer is row 2.
    expected = [0] * 54 + [1] * 54 + [0] * 3 + [1] * 3 + [2] * 10
    assert stack.env_of.tolist() == expected
    for module, original in zip(convs + linear, originals, strict=True):
        for name, parameter in module.named_parameters():
            assert torch.equal(parameter, original[name])
            assert parameter.data_ptr() != original[name].data_ptr()

    # Modules see the storage the stack trains.
    with torch.no_grad():
        stack.flat.add_(1.0)
    assert torch.equal(linear[0].bias, originals[2]["bias"] + 1)


def test_each_groups_gradient_reaches_only_its_rows() -> None:
    convs = [_conv(), _conv()]
    linear = [nn.Linear(4, 2)]
    stack = ParameterStack(convs, linear)
    _, linear_weights = stack.weights()
    (linear_weights["weight"].sum() * 2).backward()
    grad = stack.flat.grad
    assert grad is not None
    on_linear = stack.env_of == 2
    assert torch.all(grad[~on_linear] == 0)
    weight_positions = grad[on_linear][:8]
    assert torch.all(weight_positions == 2)


def test_modules_of_one_group_must_match() -> None:
    with pytest.raises(ValueError, match="same parameters"):
        ParameterStack([nn.Linear(4, 2), nn.Linear(4, 3)])
    with pytest.raises(ValueError, match="at least one"):
        ParameterStack()
    with pytest.raises(ValueError, match="at least one module"):
        ParameterStack([nn.Linear(4, 2)], [])
