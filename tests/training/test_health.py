"""The host health checks (app/training/health.py) driven by real conditions in a real
training environment: a broken isolation, exploding and vanishing host gradients, a slow
epoch and accuracy collapsing after a fossilization; and silence on healthy runs."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from helpers import EventRecorder, train_alone
from torch import Tensor

import app.training.environment_batch as environment_batch_module
from app.contracts.actions import Action
from app.contracts.events import EventType, Severity
from app.contracts.stages import SeedStage
from app.control.tracker import TrackerConfig
from app.model.host import SLOT_ID
from app.model.slot import SeedSlot, SlotConfig
from app.model.stacked_hosts import StackedHosts
from app.training.config import RunConfig
from app.training.datasets import Dataset, load_dataset
from app.training.environment import HostConfig, HostEnvironment
from app.training.governor import Governor
from app.training.health import HostHealthConfig
from app.training.vectorized import VectorizedTrainer

HEALTH_EVENTS = (
    EventType.ISOLATION_VIOLATION,
    EventType.GRADIENT_ANOMALY,
    EventType.PERFORMANCE_DEGRADATION,
)
# Two TRAINING epochs, so "once per seed" is tested across epochs.
TWO_TRAINING_EPOCHS = SlotConfig(
    training_epochs=2, blending_epochs=2, shadowing_epochs=1, probation_max_epochs=2
)


def make_env(
    dataset: Dataset,
    health: HostHealthConfig | None = None,
    slot: SlotConfig = TWO_TRAINING_EPOCHS,
    tracker: TrackerConfig | None = None,
    env_id: int = 0,
) -> HostEnvironment:
    return HostEnvironment(
        env_id,
        dataset,
        HostConfig(),
        slot,
        tracker or TrackerConfig(stabilization_epochs=2),
        seed=env_id,
        device=torch.device("cpu"),
        health_config=health,
    )


def health_events(events: EventRecorder) -> list[Any]:
    return [event for event in events if event.event_type in HEALTH_EVENTS]


# --- ISOLATION_VIOLATION -------------------------------------------------------------------


def _leaky_input(self: SeedSlot, h: Tensor) -> Tensor | None:
    """SeedSlot.isolated_input without the detach: the seed's loss reaches block1 and
    block2."""
    if self.seed is None or self.stage != SeedStage.TRAINING:
        return None
    return h


def _live_head(self: StackedHosts, z: Tensor, weights: dict[str, Tensor]) -> Tensor:
    """StackedHosts._frozen_head with the live head weights: the seed's loss reaches the
    heads."""
    return self._head(z, weights)


@pytest.mark.parametrize(
    ("target", "name", "replacement", "prefix"),
    [
        (SeedSlot, "isolated_input", _leaky_input, "block"),
        (StackedHosts, "_frozen_head", _live_head, "head."),
    ],
    ids=["activations-not-detached", "head-not-detached"],
)
def test_broken_isolation_is_reported_once_per_seed(
    events: EventRecorder,
    synthetic: Dataset,
    monkeypatch: pytest.MonkeyPatch,
    target: type,
    name: str,
    replacement: Any,
    prefix: str,
) -> None:
    monkeypatch.setattr(target, name, replacement)
    env = make_env(synthetic)
    run_epoch = train_alone(env)
    run_epoch(1)
    assert env.apply(Action.GERMINATE_CONV_LIGHT)
    run_epoch(2)
    run_epoch(3)  # still TRAINING: no second report for the same seed
    assert env.slot.stage == SeedStage.BLENDING

    (violation,) = events.of_type(EventType.ISOLATION_VIOLATION)
    data = violation.data
    assert violation.severity == Severity.ERROR
    assert violation.seed_id == data["seed_id"] == "env0_seed_0"
    assert violation.slot_id == SLOT_ID
    assert violation.epoch == data["epoch"] == 2
    assert data["env_id"] == 0
    # The first step of the first TRAINING epoch is always checked.
    steps_per_epoch = math.ceil(len(synthetic.train_y) / HostConfig().batch_size)
    assert data["step"] == steps_per_epoch
    assert math.isfinite(data["leaked_grad_norm"]) and data["leaked_grad_norm"] > 0
    assert data["parameters"] and all(p.startswith(prefix) for p in data["parameters"])
    assert not any(p.startswith("slot.") for p in data["parameters"])
    assert len(data["parameters"]) == min(5, data["parameters_leaking"])


def test_intact_isolation_is_probed_and_silent(events: EventRecorder, synthetic: Dataset) -> None:
    env = make_env(synthetic, HostHealthConfig(isolation_check_every=7))
    run_epoch = train_alone(env)
    run_epoch(1)
    assert env.apply(Action.GERMINATE_CONV_HEAVY)
    run_epoch(2)
    run_epoch(3)
    steps_per_epoch = math.ceil(len(synthetic.train_y) / HostConfig().batch_size)
    # Two TRAINING epochs, each probed on its first step and every 7th step of the episode.
    probed = {s for s in range(steps_per_epoch, 3 * steps_per_epoch) if s % 7 == 0}
    probed |= {steps_per_epoch, 2 * steps_per_epoch}
    assert env.health.counts.isolation_probes == len(probed)
    assert not health_events(events)


# --- GRADIENT_ANOMALY ----------------------------------------------------------------------


def test_exploding_host_gradient_is_reported_once_per_epoch(
    events: EventRecorder, synthetic: Dataset
) -> None:
    env = make_env(synthetic, HostHealthConfig(isolation_check_every=1))
    run_epoch = train_alone(env)
    with torch.no_grad():
        env.host.head[-1].weight.mul_(1e6)  # logits, and so upstream gradients, blow up
    run_epoch(1)
    run_epoch(2)

    anomalies = events.of_type(EventType.GRADIENT_ANOMALY)
    assert [a.epoch for a in anomalies] == [1, 2]  # every step checked, one event per epoch
    first = anomalies[0]
    assert first.severity == Severity.WARNING and first.slot_id == SLOT_ID
    assert first.data["env_id"] == 0 and first.data["epoch"] == 1
    assert first.data["kind"] == "exploding"
    assert first.data["bound"] == 1e3
    assert first.data["grad_norm"] > 1e3
    assert first.data["step"] == 0  # the very first step already explodes
    assert env.health.counts.steps_checked == 2 * math.ceil(len(synthetic.train_y) / 16)


def test_vanishing_host_gradient_is_reported(
    events: EventRecorder, synthetic: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = environment_batch_module.cross_entropy

    def shrunk(*args: Any, **kwargs: Any) -> Tensor:
        return real(*args, **kwargs) * 1e-12

    monkeypatch.setattr(environment_batch_module, "cross_entropy", shrunk)
    env = make_env(synthetic)
    run_epoch = train_alone(env)
    run_epoch(1)

    (anomaly,) = events.of_type(EventType.GRADIENT_ANOMALY)
    assert anomaly.data["kind"] == "vanishing"
    assert anomaly.data["bound"] == 1e-7
    assert 0 <= anomaly.data["grad_norm"] < 1e-7
    assert anomaly.data["step"] == 0 and anomaly.epoch == 1


def test_grad_bounds_are_configurable(events: EventRecorder, synthetic: Dataset) -> None:
    env = make_env(synthetic, HostHealthConfig(grad_vanishing=1e-9, grad_exploding=1e-6))
    run_epoch = train_alone(env)
    run_epoch(1)
    (anomaly,) = events.of_type(EventType.GRADIENT_ANOMALY)
    assert anomaly.data["kind"] == "exploding" and anomaly.data["bound"] == 1e-6


# --- PERFORMANCE_DEGRADATION ---------------------------------------------------------------


def test_epoch_over_its_time_budget_is_reported(events: EventRecorder, synthetic: Dataset) -> None:
    env = make_env(synthetic, HostHealthConfig(epoch_time_budget_s=1e-6))
    run_epoch = train_alone(env)
    run_epoch(1)
    (slow,) = events.of_type(EventType.PERFORMANCE_DEGRADATION)
    (epoch,) = events.of_type(EventType.EPOCH_COMPLETED)
    assert slow.severity == Severity.WARNING and slow.epoch == 1 and slow.slot_id == SLOT_ID
    assert slow.data["kind"] == "epoch_time"
    assert slow.data["budget_s"] == 1e-6
    assert slow.data["measured_s"] == epoch.data["duration_s"] > 1e-6
    assert slow.data["env_id"] == 0 and slow.data["epoch"] == 1


def test_accuracy_collapse_after_fossilization_is_reported_once(
    events: EventRecorder, synthetic: Dataset
) -> None:
    slot = SlotConfig(
        training_epochs=1,
        blending_epochs=2,
        shadowing_epochs=1,
        probation_max_epochs=2,
        embargo_epochs=1,
    )
    env = make_env(synthetic, slot=slot)
    run_epoch = train_alone(env)
    epoch = 0
    while not (env.signals and env.signals.host_stabilized):
        epoch += 1
        run_epoch(epoch)
        assert epoch < 20, "host never stabilized"
    assert env.apply(Action.GERMINATE_CONV_HEAVY)
    while env.slot.stage != SeedStage.PROBATIONARY:
        epoch += 1
        run_epoch(epoch)
        assert epoch < 40, f"stuck in {env.slot.stage.name}"
    assert env.apply(Action.FOSSILIZE), f"counterfactual {env.slot.state.counterfactual}"
    at_fossilization = env.slot.state.latest_accuracy
    epoch += 1
    run_epoch(epoch)
    assert not events.of_type(EventType.PERFORMANCE_DEGRADATION)

    # Corrupt the host: swap its classes' output weights and stop learning, so accuracy
    # collapses with a finite loss; a lenient governor keeps the corruption (no rollback).
    env.governor = Governor(env.host, spike_factor=1e9)
    env.governor.snapshot()
    env.host_optimizer.lr = 0.0
    seed_state = env.seed_optimizer_state()
    assert seed_state is not None and seed_state.state_dict(), "the seed never trained"
    seed_state.load_state_dict({**seed_state.state_dict(), "lr": 0.0})
    with torch.no_grad():
        linear = env.host.head[-1]
        linear.weight.copy_(linear.weight.roll(1, dims=0))
        linear.bias.copy_(linear.bias.roll(1, dims=0))
    epoch += 1
    run_epoch(epoch)
    epoch += 1
    run_epoch(epoch)  # still collapsed: not reported twice

    (drop,) = events.of_type(EventType.PERFORMANCE_DEGRADATION)
    (completed,) = [e for e in events.of_type(EventType.EPOCH_COMPLETED) if e.epoch == epoch - 1]
    data = drop.data
    assert drop.severity == Severity.WARNING and drop.epoch == data["epoch"] == epoch - 1
    assert drop.seed_id == data["seed_id"] == "env0_seed_0" and drop.slot_id == SLOT_ID
    assert data["kind"] == "post_fossilization" and data["env_id"] == 0
    assert data["accuracy_at_fossilization"] == at_fossilization
    assert data["accuracy"] == completed.data["val_accuracy"]
    assert data["drop"] == pytest.approx(at_fossilization - data["accuracy"])
    assert data["drop"] > 5.0


# --- healthy runs --------------------------------------------------------------------------


def test_healthy_default_run_raises_no_health_event(
    events: EventRecorder, fast_config: RunConfig, synthetic: Dataset
) -> None:
    trainer = VectorizedTrainer(fast_config, synthetic)
    while not trainer.finished:
        trainer.run_batch()
    assert events.of_type(EventType.SEED_GERMINATED), "no seed ever trained"
    assert all(env.health.counts.steps_checked > 0 for env in trainer.envs)
    assert not health_events(events)


def test_healthy_digits_host_with_a_seed_raises_no_health_event(events: EventRecorder) -> None:
    digits = load_dataset("digits", seed=0)
    env = make_env(digits, slot=SlotConfig(), tracker=TrackerConfig())
    run_epoch = train_alone(env)
    for epoch in range(1, 13):
        if epoch == 4:
            assert env.apply(Action.GERMINATE_CONV_HEAVY)
        run_epoch(epoch)
    assert env.health.counts.isolation_probes > 0
    assert not health_events(events)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match=r"isolation_check_every must be at least 0, got -1$"):
        HostHealthConfig(isolation_check_every=-1)
    with pytest.raises(ValueError, match=r"epoch_time_budget_s must be greater than 0, got 0$"):
        HostHealthConfig(epoch_time_budget_s=0.0)
    with pytest.raises(
        ValueError, match=r"grad_vanishing must be less than grad_exploding \(1\), got 1$"
    ):
        HostHealthConfig(grad_vanishing=1.0, grad_exploding=1.0)
    assert RunConfig().health == HostHealthConfig()
