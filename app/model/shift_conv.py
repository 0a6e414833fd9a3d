"""Convolutions on small feature maps as two matrix products, for the CPU.

oneDNN's convolution costs a fixed overhead per call, forward and backward, that dwarfs
the arithmetic of a seed's 3x3 convolution on a 4x4 map or of the host's first layer on
an 8x8 digit. On maps this small the convolution is instead written as dense products
with a fixed 0/1 shift matrix: `cols = x @ shift` gathers every tap's input position for
every output position (what im2col does), and one batched product per group applies the
weights. Both products and their gradients are plain matmuls, so forward and backward
together cost a few small GEMMs instead of two oneDNN calls and their layout copies.

The shift matrix has (H * W) x (taps * output positions) entries, so its product grows
with the square of the map; `fits` keeps this path to products small enough to be cheaper
than the oneDNN call (timed forward and backward at the host's and the seeds' sizes), and
to the CPU, where that overhead is the problem.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor, nn

# Multiply-adds of the dense shift products below which they beat oneDNN's per-call
# overhead on CPU. With four environments, a training minibatch of the host's first layer
# (raw images: no gradient to the input) or of any seed fits; the host's second layer
# (64 channels needing a gradient) and a validation pass (hundreds of images) do not.
MAX_SHIFT_MACS = 2_500_000


def fits(module: nn.Conv2d, x: Tensor) -> bool:
    """Whether `module` on `x` (B, C, H, W) is cheaper as shift products than in oneDNN:
    the product forward, and its transpose backward when `x` needs a gradient."""
    if x.device.type != "cpu" or module.padding_mode != "zeros" or isinstance(module.padding, str):
        return False
    batch, channels, height, width = x.shape
    out_height, out_width = _output_size(module, height, width)
    taps = module.kernel_size[0] * module.kernel_size[1]
    products = 2 if x.requires_grad else 1
    macs = products * batch * channels * height * width * taps * out_height * out_width
    return macs <= MAX_SHIFT_MACS


def shift_conv2d(
    module: nn.Conv2d, x: Tensor, weight: Tensor, bias: Tensor | None, groups: int
) -> Tensor:
    """`module`'s convolution of `x` (B, C, H, W) with `weight` (C_out, C / groups, kh,
    kw) and `bias` (C_out,), as `functional.conv2d` would compute it with `groups`."""
    batch, channels, height, width = x.shape
    out_height, out_width = _output_size(module, height, width)
    shift = _shift_matrix(
        (height, width),
        (out_height, out_width),
        module.kernel_size,
        module.stride,
        module.padding,
        module.dilation,
        x.device,
        x.dtype,
    )
    per_group = channels // groups * module.kernel_size[0] * module.kernel_size[1]
    cols = x.reshape(batch * channels, height * width)
    if shift is not None:
        cols = cols @ shift
    cols = cols.view(batch, groups, per_group, out_height * out_width)
    out_channels = weight.shape[0]
    y = torch.matmul(weight.reshape(groups, out_channels // groups, per_group), cols)
    y = y.view(batch, out_channels, out_height, out_width)
    return y if bias is None else y + bias.view(1, out_channels, 1, 1)


def _output_size(module: nn.Conv2d, height: int, width: int) -> tuple[int, int]:
    sizes = []
    for axis, size in enumerate((height, width)):
        span = module.dilation[axis] * (module.kernel_size[axis] - 1) + 1
        padded = size + 2 * module.padding[axis]  # type: ignore[operator]
        sizes.append((padded - span) // module.stride[axis] + 1)
    return sizes[0], sizes[1]


@lru_cache(maxsize=64)
def _shift_matrix(
    size: tuple[int, int],
    out_size: tuple[int, int],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor | None:
    """(H * W, taps * output positions): entry (q, (t, p)) is 1 where input position q
    is tap t of output position p, and a tap that falls in the zero padding has none.
    None for a pointwise convolution, whose columns are the input itself."""
    (height, width), (out_height, out_width) = size, out_size
    if kernel == (1, 1) and stride == (1, 1) and padding == (0, 0):
        return None
    rows, cols = [], []
    for ky in range(kernel[0]):
        for kx in range(kernel[1]):
            tap = ky * kernel[1] + kx
            for oy in range(out_height):
                iy = oy * stride[0] - padding[0] + ky * dilation[0]
                for ox in range(out_width):
                    ix = ox * stride[1] - padding[1] + kx * dilation[1]
                    if 0 <= iy < height and 0 <= ix < width:
                        rows.append(iy * width + ix)
                        cols.append((tap * out_height + oy) * out_width + ox)
    shift = torch.zeros(height * width, kernel[0] * kernel[1] * out_height * out_width)
    shift[rows, cols] = 1.0
    return shift.to(device=device, dtype=dtype)
