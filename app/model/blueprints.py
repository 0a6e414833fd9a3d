"""The modules a seed can be grown from, one builder per blueprint name.

Every seed maps (B, C, H, W) to the same shape and is used residually, h + alpha * seed(h).
Each seed's last layer starts near zero so that blending a fresh seed in leaves the host's
function almost unchanged; the layers stay trainable (no exact zeros in front of a ReLU,
which would block every gradient).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from app.contracts.actions import BLUEPRINTS

# Scale applied to the default initialization of each seed's last layer.
_LAST_LAYER_SCALE = 1e-2
_ATTENTION_REDUCTION = 4


def group_count(channels: int) -> int:
    """The number of GroupNorm groups for `channels`: at most 8, and a divisor of it."""
    return next(groups for groups in (8, 4, 2, 1) if channels % groups == 0)


def count_params(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def _shrink(layer: nn.Conv2d | nn.Linear) -> None:
    """Scale a layer's weights down and zero its bias so its output starts near zero."""
    with torch.no_grad():
        layer.weight.mul_(_LAST_LAYER_SCALE)
        if layer.bias is not None:
            layer.bias.zero_()


def _conv_light(channels: int) -> nn.Module:
    conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
    _shrink(conv)
    return nn.Sequential(conv, nn.ReLU())


def _conv_heavy(channels: int) -> nn.Module:
    expand = nn.Conv2d(channels, 2 * channels, kernel_size=3, padding=1)
    project = nn.Conv2d(2 * channels, channels, kernel_size=3, padding=1)
    _shrink(project)
    return nn.Sequential(expand, nn.ReLU(), project)


def _depthwise(channels: int) -> nn.Module:
    spatial = nn.Conv2d(channels, channels, kernel_size=3, padding=1, groups=channels)
    pointwise = nn.Conv2d(channels, channels, kernel_size=1)
    _shrink(pointwise)
    return nn.Sequential(spatial, pointwise, nn.ReLU())


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation as a residual: returns h * tanh(gate), so h + seed(h) rescales
    each channel by a factor in (0, 2) and a fresh seed (gate near zero) is near identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(channels // _ATTENTION_REDUCTION, 1)
        self.squeeze = nn.Linear(channels, hidden)
        self.excite = nn.Linear(hidden, channels)
        _shrink(self.excite)

    def forward(self, h: Tensor) -> Tensor:
        pooled = h.mean(dim=(2, 3))
        gate = torch.tanh(self.excite(torch.relu(self.squeeze(pooled))))
        return h * gate[:, :, None, None]


def _norm(channels: int) -> nn.Module:
    """GroupNorm whose affine scale and shift start at zero: the output is exactly zero at
    first, yet the scale gets the normalized activations as gradient and learns at once."""
    norm = nn.GroupNorm(group_count(channels), channels, affine=True)
    with torch.no_grad():
        norm.weight.zero_()
        norm.bias.zero_()
    return norm


_BUILDERS: dict[str, Callable[[int], nn.Module]] = {
    "conv_light": _conv_light,
    "conv_heavy": _conv_heavy,
    "depthwise": _depthwise,
    "attention": ChannelAttention,
    "norm": _norm,
}


def build_seed(blueprint: str, channels: int) -> nn.Module:
    """A fresh seed module of the named blueprint for a slot with `channels` channels."""
    builder = _BUILDERS.get(blueprint)
    if builder is None:
        raise ValueError(f"unknown blueprint {blueprint!r}; valid: {', '.join(BLUEPRINTS)}")
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    return builder(channels)
