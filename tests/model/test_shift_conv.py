"""Convolutions on small maps as shift-matrix products: the same values and gradients as
`functional.conv2d`, and used only where they are the cheaper kernel."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional

from app.model import shift_conv

GEOMETRIES = [
    # in, out, kernel, stride, padding, dilation, groups, map size
    (4, 8, 3, 1, 1, 1, 1, 4),
    (16, 4, 3, 1, 1, 1, 4, 4),
    (1, 16, 3, 1, 1, 1, 1, 8),
    (4, 4, 3, 1, 1, 1, 4, 4),  # depthwise
    (4, 4, 1, 1, 0, 1, 1, 4),  # pointwise: the columns are the input itself
    (3, 6, 3, 2, 1, 1, 3, 7),  # strided, odd map
    (2, 4, 3, 1, 2, 2, 1, 5),  # dilated
    (2, 2, (3, 1), 1, (1, 0), 1, 1, 5),  # rectangular kernel
]


@pytest.mark.parametrize(
    ("c_in", "c_out", "kernel", "stride", "padding", "dilation", "groups", "size"), GEOMETRIES
)
def test_values_and_gradients_match_conv2d(
    c_in: int,
    c_out: int,
    kernel: int | tuple[int, int],
    stride: int,
    padding: int | tuple[int, int],
    dilation: int,
    groups: int,
    size: int,
) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups).double()
    x = torch.randn(3, c_in, size, size, dtype=torch.float64, requires_grad=True)
    ours = shift_conv.shift_conv2d(conv, x, conv.weight, conv.bias, groups)
    theirs = functional.conv2d(x, conv.weight, conv.bias, stride, padding, dilation, groups)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)

    weight = torch.randn_like(ours)
    inputs = [x, conv.weight, conv.bias]
    ours_grad = torch.autograd.grad((ours * weight).sum(), inputs)
    theirs_grad = torch.autograd.grad((theirs * weight).sum(), inputs)
    for a, b in zip(ours_grad, theirs_grad, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_without_bias() -> None:
    conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
    x = torch.randn(2, 4, 4, 4)
    ours = shift_conv.shift_conv2d(conv, x, conv.weight, None, 1)
    torch.testing.assert_close(ours, conv(x))


def test_training_minibatches_fit_and_validation_passes_do_not() -> None:
    host_first = nn.Conv2d(1, 16, 3, padding=1)
    # Four stacked hosts' first layer on a minibatch of 16 digits, and on a validation pass.
    assert shift_conv.fits(host_first, torch.empty(16, 4, 8, 8))
    assert not shift_conv.fits(host_first, torch.empty(360, 4, 8, 8))
    # Their second layer: the same forward product, and its transpose for the gradient.
    host_second = nn.Conv2d(16, 4, 3, padding=1)
    assert shift_conv.fits(host_second, torch.empty(16, 64, 4, 4))
    assert not shift_conv.fits(host_second, torch.empty(16, 64, 4, 4, requires_grad=True))
    seed = nn.Conv2d(4, 8, 3, padding=1)
    assert shift_conv.fits(seed, torch.empty(16, 16, 4, 4, requires_grad=True))
    # A CIFAR-sized map is oneDNN's, whatever the batch.
    assert not shift_conv.fits(nn.Conv2d(3, 16, 3, padding=1), torch.empty(1, 3, 32, 32))


def test_only_on_cpu_and_zero_padding() -> None:
    x = torch.empty(16, 4, 4, 4, device="meta")
    assert not shift_conv.fits(nn.Conv2d(4, 4, 3, padding=1), x)
    reflect = nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")
    assert not shift_conv.fits(reflect, torch.empty(16, 4, 4, 4))
