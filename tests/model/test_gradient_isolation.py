"""While a seed is TRAINING, its loss must never reach a host parameter; once it blends,
gradient flows through the seed into the host as usual."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch.nn import functional

from app.contracts.actions import BLUEPRINTS
from app.contracts.stages import SeedStage
from app.model.host import HostCNN
from app.model.slot import SeedSlot, SlotConfig

Driver = Callable[[SeedSlot, SeedStage], None]


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))


def make_host(config: SlotConfig | None = None) -> HostCNN:
    torch.manual_seed(1)
    return HostCNN(
        in_channels=1, num_classes=10, image_size=8, width=8, env_id=0, slot_config=config
    )


def training_host(blueprint: str = "conv_heavy") -> HostCNN:
    host = make_host()
    assert host.slot.germinate(blueprint, "env0_seed_0")
    assert host.slot.stage == SeedStage.TRAINING
    return host


@pytest.mark.parametrize("blueprint", BLUEPRINTS)
def test_seed_loss_puts_no_gradient_into_the_host(
    blueprint: str, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    host = training_host(blueprint)
    x, y = batch
    host.zero_grad()
    seed_logits = host(x).seed_logits
    assert seed_logits is not None
    functional.cross_entropy(seed_logits, y).backward()
    for name, parameter in host.named_parameters():
        if name.startswith("slot.seed."):
            continue
        assert parameter.grad is None or not parameter.grad.any(), name
    seed_grads = [p.grad for p in host.seed_parameters()]
    assert all(grad is not None and grad.any() for grad in seed_grads)


def test_no_autograd_path_leads_from_the_seed_loss_to_the_host(
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    host = training_host()
    x, y = batch
    seed_logits = host(x).seed_logits
    assert seed_logits is not None
    loss = functional.cross_entropy(seed_logits, y)
    grads = torch.autograd.grad(loss, host.host_parameters(), allow_unused=True)
    assert all(grad is None for grad in grads)


def test_host_gradients_are_identical_with_and_without_a_training_seed(
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    alone = make_host()
    seeded = copy.deepcopy(alone)
    seeded.slot.germinate("conv_heavy", "env0_seed_0")
    x, y = batch

    functional.cross_entropy(alone(x).logits, y).backward()
    output = seeded(x)
    assert output.seed_logits is not None
    assert torch.equal(output.logits, alone(x).logits)
    loss = functional.cross_entropy(output.logits, y)
    (loss + functional.cross_entropy(output.seed_logits, y)).backward()

    seeded_params = dict(seeded.named_parameters())
    for name, parameter in alone.named_parameters():
        assert parameter.grad is not None
        assert torch.equal(parameter.grad, seeded_params[name].grad), name


def test_blending_seed_trains_with_the_host(
    batch: tuple[torch.Tensor, torch.Tensor], drive: Driver
) -> None:
    host = training_host()
    drive(host.slot, SeedStage.BLENDING)
    x, y = batch
    output = host(x)
    assert output.seed_logits is None
    with host.seed_disabled():
        assert not torch.equal(host(x).logits, output.logits)
    functional.cross_entropy(output.logits, y).backward()
    block2_weight = host.block2[0].weight
    assert block2_weight.grad is not None and block2_weight.grad.any()
    assert all(p.grad is not None and p.grad.any() for p in host.seed_parameters())


def test_disabled_seed_gives_the_bare_host(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    bare = make_host()
    host = make_host(SlotConfig(training_epochs=1))
    host.slot.germinate("conv_light", "env0_seed_0")
    host.slot.step_epoch(50.0)
    x, _ = batch
    with host.seed_disabled():
        output = host(x)
    assert output.seed_logits is None
    assert torch.equal(output.logits, bare(x).logits)


def test_host_and_seed_parameters_partition_the_model() -> None:
    host = training_host()
    host_ids = {id(p) for p in host.host_parameters()}
    seed_ids = {id(p) for p in host.seed_parameters()}
    assert seed_ids
    assert not host_ids & seed_ids
    assert host_ids | seed_ids == {id(p) for p in host.parameters()}
    assert not {id(p) for p in make_host().seed_parameters()}


@pytest.mark.parametrize(
    ("shape", "widths"),
    [
        ((1, 8, 8), {"width": 8}),
        ((3, 32, 32), {"width": 16, "block2_width": 24, "block3_width": 32}),
    ],
)
def test_host_sizes(shape: tuple[int, int, int], widths: dict[str, int]) -> None:
    host = HostCNN(in_channels=shape[0], num_classes=10, image_size=shape[1], **widths)
    host.slot.germinate("depthwise", "s0")
    output = host(torch.randn(2, *shape))
    assert output.logits.shape == (2, 10)
    assert output.seed_logits is not None and output.seed_logits.shape == (2, 10)


def test_host_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="width"):
        HostCNN(in_channels=1, num_classes=10, image_size=8, width=0)
    with pytest.raises(ValueError, match="image_size"):
        HostCNN(in_channels=1, num_classes=10, image_size=1)
