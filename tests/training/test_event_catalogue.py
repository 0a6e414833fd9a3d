"""Every event type is emitted by real code: a catalogue of scenarios, one per event type.

Each scenario drives real application code (a `VectorizedTrainer` run, a `HostEnvironment`,
`run_command`, the progress detector) and the events are whatever that code emits through
`app.telemetry`; no test builds a `TelemetryEvent` or calls `telemetry.emit` itself. Where a
condition is rare, the scenario makes it happen the way a user could: by setting a threshold
in the run's configuration (a memory warning at a millionth of the limit, an epoch time
budget of a microsecond, anomaly thresholds any update crosses). Only faults a user cannot
configure are injected, by patching one function: a seed whose isolation leaks, and a
reward function that returns NaN.

`CATALOGUE` names the scenario for each `EventType`; a new event type fails
`test_every_event_type_has_a_scenario` until a scenario in which real code emits it is
added. Each scenario runs once per module and its events are shared by the cases it covers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import torch
from helpers import EventRecorder, documented_events, train_alone
from torch import Tensor

import app.training.decisions as decisions_module
from app import telemetry
from app.contracts.actions import Action
from app.contracts.events import EventType, TelemetryEvent, TelemetryLevel
from app.contracts.stages import SeedStage
from app.model.slot import SeedSlot
from app.rl.anomaly import AnomalyThresholds
from app.rl.reward_hacking import RewardHackingConfig
from app.rl.rewards import RewardConfig
from app.training.commands import run_command
from app.training.config import RunConfig
from app.training.datasets import Dataset
from app.training.environment import HostEnvironment
from app.training.health import HostHealthConfig
from app.training.memory import MemoryConfig
from app.training.progress import ProgressDetector
from app.training.vectorized import VectorizedTrainer

Scenario = Callable[[Dataset, RunConfig], None]


def _train(config: RunConfig, dataset: Dataset) -> None:
    trainer = VectorizedTrainer(config, dataset)
    while not trainer.finished:
        trainer.run_batch()


def _environment(config: RunConfig, dataset: Dataset) -> HostEnvironment:
    """One environment built from the run's configuration, as the trainer builds them."""
    return HostEnvironment(
        0,
        dataset,
        config.host,
        config.slot,
        config.tracker,
        seed=config.seed,
        device=torch.device(config.device),
        health_config=config.health,
    )


# --- Scenarios -----------------------------------------------------------------------------


def heuristic_run(dataset: Dataset, config: RunConfig) -> None:
    """The heuristic controller on the fast config: the host stabilizes, seeds germinate,
    move through their stages and are fossilized or culled by the controller's commands
    (seed 2: its four episodes end in both outcomes)."""
    _train(replace(config, controller="heuristic", seed=2), dataset)


def farmable_germination_bonus(dataset: Dataset, config: RunConfig) -> None:
    """A germination bonus worth 100 accuracy points: GERMINATE earns nearly all of the
    reward but none of the accuracy (as tests/training/test_reward_hacking_runs.py)."""
    _train(
        replace(
            config,
            controller="heuristic",
            reward=RewardConfig(germination_bonus=100.0),
            reward_hacking=RewardHackingConfig(min_action_steps=2),
        ),
        dataset,
    )


def hair_trigger_anomaly_thresholds(dataset: Dataset, config: RunConfig) -> None:
    """A PPO batch whose anomaly thresholds every update crosses: any ratio above or below
    1, any explained variance (of a critic judged from its first update), any nonzero
    gradient norm."""
    thresholds = AnomalyThresholds(
        ratio_explosion=1.0,
        ratio_collapse=1.0,
        value_collapse=math.inf,
        value_warmup_updates=0,
        grad_exploding=1e-9,
    )
    _train(replace(config, controller="ppo", episodes=config.envs, anomaly=thresholds), dataset)


def hair_trigger_host_monitors(dataset: Dataset, config: RunConfig) -> None:
    """One batch whose host monitors fire on anything: memory at a millionth of the limit,
    an epoch time budget of a microsecond, a host gradient norm above 1e-9 "exploding"."""
    _train(
        replace(
            config,
            episodes=config.envs,
            memory=MemoryConfig(warning_fraction=1e-6, hysteresis=0.0),
            health=HostHealthConfig(
                epoch_time_budget_s=1e-6, grad_vanishing=1e-12, grad_exploding=1e-9
            ),
        ),
        dataset,
    )


def _nan_reward(*args: Any, **kwargs: Any) -> float:
    return math.nan


def nan_rewards(dataset: Dataset, config: RunConfig) -> None:
    """A PPO batch whose reward function returns NaN (what a host whose accuracy diverged
    would give): the update skips its broken minibatches and reports the instability."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decisions_module, "step_reward", _nan_reward)
        _train(replace(config, controller="ppo", episodes=config.envs), dataset)


def _leaky_input(self: SeedSlot, h: Tensor) -> Tensor | None:
    """SeedSlot.isolated_input without the detach: the seed's loss reaches the host."""
    if self.seed is None or self.stage != SeedStage.TRAINING:
        return None
    return h


def leaky_isolation(dataset: Dataset, config: RunConfig) -> None:
    """A seed trained on activations that are not detached from the host (a broken
    isolation, as in tests/training/test_health.py), through one TRAINING epoch."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SeedSlot, "isolated_input", _leaky_input)
        env = _environment(config, dataset)
        run_epoch = train_alone(env)
        run_epoch(1)
        assert env.apply(Action.GERMINATE_CONV_LIGHT)
        run_epoch(2)


def refused_commands(dataset: Dataset, config: RunConfig) -> None:
    """Commands the slot does not carry out, for each reason: masked, invalid for the
    stage, and a FOSSILIZE the gate rejects (it requires 100 points of contribution)."""
    env = _environment(
        replace(config, slot=replace(config.slot, min_fossilize_improvement=100.0)), dataset
    )
    run_epoch = train_alone(env)
    run_epoch(1)
    run_command(env, Action.CULL, False, "ppo")
    run_command(env, Action.FOSSILIZE, True, "heuristic")
    assert run_command(env, Action.GERMINATE_CONV_LIGHT, True, "heuristic")
    epoch = 1
    while env.slot.stage != SeedStage.PROBATIONARY:
        epoch += 1
        run_epoch(epoch)
    run_command(env, Action.FOSSILIZE, True, "heuristic")


def accuracy_trends(dataset: Dataset, config: RunConfig) -> None:
    """Six batch accuracies rising, flat and falling, as the trainer hands them over."""
    histories = {
        "rising": [50.0, 50.0, 50.0, 60.0, 60.0, 60.0],
        "flat": [50.0] * 6,
        "falling": [60.0, 60.0, 60.0, 50.0, 50.0, 50.0],
    }
    for history in histories.values():
        ProgressDetector(config.progress).observe(len(history), history, 2 * len(history))


# --- The catalogue -------------------------------------------------------------------------

CATALOGUE: dict[EventType, Scenario] = {
    EventType.SEED_GERMINATED: heuristic_run,
    EventType.SEED_STAGE_CHANGED: heuristic_run,
    EventType.SEED_FOSSILIZED: heuristic_run,
    EventType.SEED_CULLED: heuristic_run,
    EventType.EPOCH_COMPLETED: heuristic_run,
    EventType.TAMIYO_INITIATED: heuristic_run,
    EventType.COMMAND_ISSUED: heuristic_run,
    EventType.COMMAND_EXECUTED: heuristic_run,
    EventType.COMMAND_FAILED: refused_commands,
    EventType.PLATEAU_DETECTED: accuracy_trends,
    EventType.DEGRADATION_DETECTED: accuracy_trends,
    EventType.IMPROVEMENT_DETECTED: accuracy_trends,
    EventType.ISOLATION_VIOLATION: leaky_isolation,
    EventType.GRADIENT_ANOMALY: hair_trigger_host_monitors,
    EventType.PERFORMANCE_DEGRADATION: hair_trigger_host_monitors,
    EventType.MEMORY_WARNING: hair_trigger_host_monitors,
    EventType.PPO_UPDATE_COMPLETED: hair_trigger_anomaly_thresholds,
    EventType.RATIO_EXPLOSION_DETECTED: hair_trigger_anomaly_thresholds,
    EventType.RATIO_COLLAPSE_DETECTED: hair_trigger_anomaly_thresholds,
    EventType.VALUE_COLLAPSE_DETECTED: hair_trigger_anomaly_thresholds,
    EventType.GRADIENT_PATHOLOGY_DETECTED: hair_trigger_anomaly_thresholds,
    EventType.NUMERICAL_INSTABILITY_DETECTED: nan_rewards,
    EventType.REWARD_HACKING_SUSPECTED: farmable_germination_bonus,
}

# What docs/events.md requires of each event: its severity and its data fields.
DOCUMENTED = documented_events()


def record(scenario: Scenario, dataset: Dataset, config: RunConfig) -> list[TelemetryEvent]:
    """Run a scenario at NORMAL level; every event it emitted, in order. The previously
    installed handler and the NORMAL level are put back however it ends."""
    previous = telemetry.event_handler()
    recorder = EventRecorder()
    telemetry.set_level(TelemetryLevel.NORMAL)
    telemetry.set_event_handler(recorder)
    try:
        torch.manual_seed(config.seed)
        scenario(dataset, config)
    finally:
        telemetry.set_event_handler(previous)
        telemetry.set_level(TelemetryLevel.NORMAL)
    return list(recorder)


@pytest.fixture(scope="module")
def recorded() -> dict[Scenario, list[TelemetryEvent]]:
    """Each scenario's events, recorded once for this module on first use."""
    return {}


def _is_json_value(value: object) -> bool:
    """Whether the JSONL log writes `value` as it is (rather than as `str(value)`)."""
    if value is None or isinstance(value, str | bool | int | float):
        return True
    if isinstance(value, list | tuple):
        return all(_is_json_value(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json_value(v) for k, v in value.items())
    return False


# --- Tests ---------------------------------------------------------------------------------


def test_every_event_type_has_a_scenario() -> None:
    missing = [event_type.value for event_type in EventType if event_type not in CATALOGUE]
    assert not missing, (
        "a new event type needs a scenario in which real code emits it: " + ", ".join(missing)
    )
    assert set(CATALOGUE) == set(EventType)


def test_every_event_type_is_documented() -> None:
    assert set(DOCUMENTED) == set(EventType)


@pytest.mark.parametrize("event_type", list(EventType), ids=str)
def test_real_code_emits(
    event_type: EventType,
    recorded: dict[Scenario, list[TelemetryEvent]],
    synthetic: Dataset,
    fast_config: RunConfig,
) -> None:
    scenario = CATALOGUE.get(event_type)
    if scenario is None:
        pytest.fail(f"{event_type} has no scenario (see test_every_event_type_has_a_scenario)")
    if scenario not in recorded:
        recorded[scenario] = record(scenario, synthetic, fast_config)
    emitted = [event for event in recorded[scenario] if event.event_type == event_type]

    assert emitted, f"{scenario.__name__} emitted no {event_type}"
    for event in emitted:
        assert TelemetryEvent.from_record(event.to_record()) == event
        assert event.message
        assert _is_json_value(event.data), f"{event_type} data is not plain JSON: {event.data}"
        documented = DOCUMENTED[event_type]
        missing = [name for name in documented.fields if name not in event.data]
        assert not missing, f"{event_type} lacks the data fields docs/events.md lists: {missing}"
        assert event.severity == documented.severity, event
