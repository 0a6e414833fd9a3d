"""The host's block1 pools before its ReLU: exactly the textbook conv, norm, ReLU, pool."""

from __future__ import annotations

import torch
from torch import nn

from app.model.host import HostCNN


def test_block1_pooling_before_its_relu_gives_the_same_values_and_gradients() -> None:
    torch.manual_seed(0)
    host = HostCNN(2, 10, 6, width=4).double()
    conv, norm = host.block1[0], host.block1[1]
    assert [type(m) for m in host.block1[2:]] == [nn.MaxPool2d, nn.ReLU]
    textbook = nn.Sequential(conv, norm, nn.ReLU(), nn.MaxPool2d(2))
    x = torch.randn(5, 2, 6, 6, dtype=torch.float64)
    x[1] = 0.5  # a constant image: equal values, ties in the inner windows
    normed = norm(conv(x)).detach()
    assert (normed.view(5, 4, 3, 2, 3, 2).amax(dim=(3, 5)) <= 0).any(), "no window <= 0"
    x.requires_grad_(True)
    ours, theirs = host.block1(x), textbook(x)
    assert torch.equal(ours, theirs)

    weight = torch.randn_like(ours)
    inputs = [x, *conv.parameters(), *norm.parameters()]
    ours_grad = torch.autograd.grad((ours * weight).sum(), inputs)
    theirs_grad = torch.autograd.grad((theirs * weight).sum(), inputs)
    for a, b in zip(ours_grad, theirs_grad, strict=True):
        assert torch.equal(a, b)
