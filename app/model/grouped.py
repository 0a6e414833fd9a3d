"""N copies of a module applied at once, in grouped layout, with stacked weights.

The grouped layout puts copy i's channels in the i-th group of one tensor,
(B, N * channels, H, W) for feature maps and (B, N * features) for vectors, so that a
convolution runs as one grouped convolution (`groups=N`), a GroupNorm as one with N times
the groups, and a linear layer as one batched matrix product. `weights` holds each
parameter as (N, *shape) under the module's own parameter names (a `ParameterStack`).
This covers the host's blocks and every seed blueprint; anything else is refused.

Convolutions on small maps in a training minibatch run as matrix products with a fixed
shift matrix (`shift_conv`), cheaper there than a oneDNN call. Layout: other convolutions
and max pooling get their input channels-last (oneDNN's grouped
convolution and max pooling are several times faster so on small feature maps), GroupNorm
gets contiguous NCHW (its CPU kernel is faster so); each converts only what it is handed
in the other layout. An epoch of four digits hosts took about 30% less than all NCHW
(benchmarks/loop_throughput.py).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional

from app.model import shift_conv
from app.model.blueprints import ChannelAttention

# Modules applied to the grouped layout as they are: they act on each channel alone.
_CHANNELWISE = (nn.ReLU, nn.AdaptiveAvgPool2d)


def apply_grouped(
    module: nn.Module, z: Tensor, weights: dict[str, Tensor], n: int, prefix: str = ""
) -> Tensor:
    """`module` (a Sequential of supported layers, or one of them) applied to the n
    copies' groups of `z`; its parameters are `weights[prefix + name]`."""
    if isinstance(module, nn.Sequential):
        for index, child in enumerate(module):
            z = apply_grouped(child, z, weights, n, f"{prefix}{index}.")
        return z
    if isinstance(module, nn.Conv2d):
        weight = weights[prefix + "weight"].flatten(0, 1)
        bias = weights[prefix + "bias"].flatten() if module.bias is not None else None
        if shift_conv.fits(module, z):
            return shift_conv.shift_conv2d(module, z, weight, bias, module.groups * n)
        return functional.conv2d(
            z.contiguous(memory_format=torch.channels_last),
            weight,
            bias,
            module.stride,
            module.padding,
            module.dilation,
            module.groups * n,
        )
    if isinstance(module, nn.GroupNorm):
        return _group_norm(module, z, weights, n, prefix)
    if isinstance(module, nn.Linear):
        return _linear(module, z, weights, n, prefix)
    if isinstance(module, ChannelAttention):
        gate = _linear(module.squeeze, z.mean(dim=(2, 3)), weights, n, prefix + "squeeze.")
        gate = _linear(module.excite, torch.relu(gate), weights, n, prefix + "excite.")
        return z * torch.tanh(gate)[:, :, None, None]
    if isinstance(module, nn.Flatten):
        return z.flatten(1)
    if isinstance(module, nn.MaxPool2d):
        pooled: Tensor = module(z.contiguous(memory_format=torch.channels_last))
        return pooled
    if isinstance(module, _CHANNELWISE):
        out: Tensor = module(z)
        return out
    raise TypeError(f"cannot apply a {type(module).__name__} grouped ({prefix or 'root'})")


def _group_norm(
    module: nn.GroupNorm, z: Tensor, weights: dict[str, Tensor], n: int, prefix: str
) -> Tensor:
    return functional.group_norm(
        z.contiguous(),
        module.num_groups * n,
        weights[prefix + "weight"].flatten() if module.affine else None,
        weights[prefix + "bias"].flatten() if module.affine else None,
        module.eps,
    )


def _linear(
    module: nn.Linear, z: Tensor, weights: dict[str, Tensor], n: int, prefix: str
) -> Tensor:
    """(B, n * in_features) -> (B, n * out_features)."""
    return linear_per_copy(module, z, weights, n, prefix).transpose(0, 1).flatten(1)


def linear_per_copy(
    module: nn.Linear, z: Tensor, weights: dict[str, Tensor], n: int, prefix: str
) -> Tensor:
    """A linear layer on grouped features (B, n * in_features), each copy's output apart:
    (n, B, out_features)."""
    per_copy = z.view(z.shape[0], n, -1).transpose(0, 1)
    weight = weights[prefix + "weight"].transpose(1, 2)
    if module.bias is None:
        return torch.bmm(per_copy, weight)
    return torch.baddbmm(weights[prefix + "bias"].unsqueeze(1), per_copy, weight)
