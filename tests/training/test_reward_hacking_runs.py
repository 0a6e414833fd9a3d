"""REWARD_HACKING_SUSPECTED from real training: a germination bonus that a controller can
collect without gaining accuracy, first paid to the heuristic (a lopsided action share),
then farmed by a PPO controller that learns to germinate and cull in a loop (reward rising
while accuracy does not)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import EventRecorder

from app.contracts.events import EventType
from app.rl.reward_hacking import RewardHackingConfig
from app.rl.rewards import RewardConfig
from app.training.config import RunConfig
from app.training.datasets import Dataset
from app.training.vectorized import VectorizedTrainer

# A bonus worth 100 accuracy points per germination: far more than any seed can earn.
FARMABLE = RewardConfig(germination_bonus=100.0)


def run(config: RunConfig, dataset: Dataset) -> list[int]:
    """Train to the end; the number of germinations executed in each batch."""
    trainer = VectorizedTrainer(config, dataset)
    germinations = []
    while not trainer.finished:
        before = sum(env.seeds_grown for env in trainer.envs)
        trainer.run_batch()
        germinations.append(sum(env.seeds_grown for env in trainer.envs) - before)
    return germinations


def suspicions(events: EventRecorder, kind: str) -> list[dict[str, Any]]:
    found = events.of_type(EventType.REWARD_HACKING_SUSPECTED)
    return [event.data for event in found if event.data["kind"] == kind]


def test_a_bonus_paid_for_germinating_is_a_lopsided_share(
    events: EventRecorder, make_config: Callable[..., RunConfig], synthetic: Dataset
) -> None:
    config = make_config(
        controller="heuristic",
        reward=FARMABLE,
        reward_hacking=RewardHackingConfig(min_action_steps=2),
    )
    germinations = run(config, synthetic)
    assert sum(germinations) >= 2
    [data] = suspicions(events, "action_share")
    assert data["dominant_action"] == "GERMINATE"
    assert data["dominant_share"] >= 0.5
    assert data["dominant_share"] >= 2.0 * data["dominant_accuracy_share"]
    assert data["window"] == data["batch"]


def test_the_same_run_without_the_bonus_is_not_suspected(
    events: EventRecorder, make_config: Callable[..., RunConfig], synthetic: Dataset
) -> None:
    config = make_config(
        controller="heuristic", reward_hacking=RewardHackingConfig(min_action_steps=2)
    )
    assert sum(run(config, synthetic)) >= 2
    assert events.of_type(EventType.REWARD_HACKING_SUSPECTED) == []


@pytest.mark.slow
def test_ppo_farming_the_bonus_is_a_trend_divergence(
    events: EventRecorder, make_config: Callable[..., RunConfig], synthetic: Dataset
) -> None:
    # Eight envs a batch keep the batch means steady enough that the trend is clear in
    # every seed tried (0-3), not only in this one.
    window = 6
    config = make_config(
        envs=8,
        episodes=64,
        max_epochs=12,
        reward=FARMABLE,
        reward_hacking=RewardHackingConfig(window=window),
    )
    germinations = run(config, synthetic)
    assert sum(germinations[-3:]) > sum(germinations[:3]), "PPO learned to farm the bonus"
    found = suspicions(events, "trend_divergence")
    assert found
    data = found[0]
    assert data["window"] == window
    assert data["reward_trend_t"] >= config.reward_hacking.reward_trend_t
    assert data["accuracy_trend_t"] <= config.reward_hacking.accuracy_trend_t
    assert data["dominant_action"] == "GERMINATE"
