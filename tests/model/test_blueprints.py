"""Every blueprint keeps the activation shape, has parameters, starts near identity as a
residual and yet learns from its first step (no parameter is cut off from the gradient)."""

from __future__ import annotations

import pytest
import torch

from app.contracts.actions import BLUEPRINTS
from app.model.blueprints import build_seed, count_params

CHANNELS = 8


@pytest.fixture
def activations() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.relu(torch.randn(4, CHANNELS, 5, 5))


@pytest.mark.parametrize("blueprint", BLUEPRINTS)
def test_seed_keeps_shape_and_has_parameters(blueprint: str, activations: torch.Tensor) -> None:
    seed = build_seed(blueprint, CHANNELS)
    assert seed(activations).shape == activations.shape
    assert count_params(seed) > 0


@pytest.mark.parametrize("blueprint", BLUEPRINTS)
def test_fresh_seed_is_near_identity_as_a_residual(
    blueprint: str, activations: torch.Tensor
) -> None:
    seed = build_seed(blueprint, CHANNELS)
    contribution = seed(activations)
    assert contribution.norm() < 0.02 * activations.norm()


@pytest.mark.parametrize("blueprint", BLUEPRINTS)
def test_every_parameter_of_a_fresh_seed_learns(blueprint: str, activations: torch.Tensor) -> None:
    seed = build_seed(blueprint, CHANNELS)
    (activations + seed(activations)).square().sum().backward()
    for name, parameter in seed.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_count_params_counts_every_element() -> None:
    assert count_params(build_seed("conv_light", 4)) == 4 * 4 * 9 + 4
    assert count_params(build_seed("norm", 4)) == 2 * 4


def test_unknown_blueprint_names_itself_and_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'mlp'") as raised:
        build_seed("mlp", CHANNELS)
    assert all(name in str(raised.value) for name in BLUEPRINTS)
