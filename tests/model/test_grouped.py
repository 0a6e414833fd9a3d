"""`apply_grouped` against each copy's own module, where the grouped path reorders work."""

from __future__ import annotations

import torch
from torch import nn

from app.model.grouped import apply_grouped


def test_relu_then_max_pool_runs_pooled_first_with_the_same_values_and_gradients() -> None:
    torch.manual_seed(0)
    block = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))
    x = torch.randn(5, 3, 2, 6, 6, dtype=torch.float64)
    x[0, :, :, :2, :2] = -1.0  # whole windows with no positive maximum
    x[1, :, :, 2:4, 2:4] = 0.5  # ties
    x.requires_grad_(True)
    grouped = apply_grouped(block, x.flatten(1, 2), {}, 3).view(5, 3, 2, 3, 3)
    alone = torch.stack([block(x[:, i]) for i in range(3)], dim=1)
    assert torch.equal(grouped, alone)
    assert (alone == 0).any()

    weight = torch.randn_like(alone)
    (grad_grouped,) = torch.autograd.grad((grouped * weight).sum(), x)
    (grad_alone,) = torch.autograd.grad((alone * weight).sum(), x)
    assert torch.equal(grad_grouped, grad_alone)
