"""The governor flags a non-finite or spiking loss, restores the last good weights bit for
bit (optimizer state too) and culls the live seed with reason governor_rollback."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from helpers import EventRecorder
from torch.nn import functional

from app.contracts.events import EventType
from app.contracts.stages import SeedStage
from app.model.host import HostCNN
from app.model.slot import SeedSlot
from app.training.governor import Governor

Driver = Callable[[SeedSlot, SeedStage], None]


def make_host() -> HostCNN:
    torch.manual_seed(0)
    return HostCNN(in_channels=1, num_classes=10, image_size=8, width=8, env_id=3)


def train_step(host: HostCNN, optimizer: torch.optim.Optimizer) -> None:
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    optimizer.zero_grad()
    output = host(x)
    loss = functional.cross_entropy(output.logits, y)
    if output.seed_logits is not None:
        loss = loss + functional.cross_entropy(output.seed_logits, y)
    loss.backward()
    optimizer.step()


def weights(host: HostCNN) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in host.state_dict().items()}


def assert_bit_exact(host: HostCNN, expected: dict[str, torch.Tensor]) -> None:
    current = host.state_dict()
    assert current.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(current[name], value), name


def test_non_finite_loss_is_catastrophic() -> None:
    governor = Governor(make_host())
    assert governor.check(float("nan"))
    assert governor.check(float("inf"))
    assert not governor.check(2.0)


def test_spike_counts_only_after_enough_healthy_epochs() -> None:
    governor = Governor(make_host(), spike_factor=3.0, min_history=3)
    governor.snapshot(1.0)
    governor.snapshot(1.0)
    assert not governor.check(100.0)
    governor.snapshot(1.0)
    assert not governor.check(2.9)
    assert governor.check(3.1)


def test_rollback_on_nan_restores_weights_and_culls_the_seed(events: EventRecorder) -> None:
    host = make_host()
    optimizer = torch.optim.SGD(host.host_parameters(), lr=0.01, momentum=0.9)
    train_step(host, optimizer)
    governor = Governor(host)
    governor.snapshot(2.0, optimizers=[optimizer])
    good, good_optimizer = (
        weights(host),
        optimizer.state_dict()["state"][0]["momentum_buffer"].clone(),
    )

    host.slot.germinate("conv_light", "env3_seed_0")
    train_step(host, optimizer)
    with torch.no_grad():
        host.head[-1].weight.fill_(float("nan"))
    assert governor.check(float("nan"))
    assert governor.rollback()

    assert_bit_exact(host, good)
    assert torch.equal(optimizer.state_dict()["state"][0]["momentum_buffer"], good_optimizer)
    assert host.slot.stage == SeedStage.CULLED
    culled = events.of_type(EventType.SEED_CULLED)
    assert [event.data["reason"] for event in culled] == ["governor_rollback"]

    train_step(host, optimizer)
    governor.rollback()
    assert_bit_exact(host, good)


def test_rollback_on_a_spike_culls_a_blending_seed(events: EventRecorder, drive: Driver) -> None:
    host = make_host()
    optimizer = torch.optim.SGD(host.host_parameters(), lr=0.1)
    governor = Governor(host)
    host.slot.germinate("attention", "env3_seed_0")
    drive(host.slot, SeedStage.BLENDING)
    for loss in (1.0, 1.1, 0.9):
        governor.snapshot(loss, optimizers=[optimizer])
    good = {name: value.clone() for name, value in host.host_state_dict().items()}
    train_step(host, optimizer)

    assert governor.check(5.0)
    assert governor.rollback()
    assert_bit_exact(host, good)
    assert events[-1].event_type == EventType.SEED_CULLED
    assert events[-1].data["reason"] == "governor_rollback"


def test_rollback_keeps_and_restores_a_fossilized_seed(drive: Driver) -> None:
    host = make_host()
    host.slot.germinate("norm", "env3_seed_0")
    drive(host.slot, SeedStage.PROBATIONARY)
    assert host.slot.fossilize()
    governor = Governor(host)
    governor.snapshot(1.0)
    good = weights(host)
    optimizer = torch.optim.SGD(host.parameters(), lr=0.1)
    train_step(host, optimizer)
    assert not torch.equal(host.state_dict()["slot.seed.weight"], good["slot.seed.weight"])

    assert not governor.rollback()
    assert host.slot.stage == SeedStage.FOSSILIZED
    assert_bit_exact(host, good)


def test_rollback_needs_a_snapshot() -> None:
    with pytest.raises(RuntimeError, match="snapshot"):
        Governor(make_host()).rollback()


def test_snapshot_refuses_an_unhealthy_loss() -> None:
    with pytest.raises(ValueError, match="healthy"):
        Governor(make_host()).snapshot(float("nan"))
