"""The reward hacking detector fed batch by batch: trend divergence and a lopsided action
share raise REWARD_HACKING_SUSPECTED once per stretch, with the trends, window, dominant
action and shares in the data; honest learning stays silent."""

from __future__ import annotations

import math
from typing import Any

import pytest
from helpers import EventRecorder

from app.contracts.actions import Action
from app.contracts.events import EventType, Severity
from app.rl.reward_hacking import (
    RewardHackingConfig,
    RewardHackingDetector,
    StepOutcome,
    Trend,
    action_kind,
    trend,
)

WINDOW = 5
CONFIG = RewardHackingConfig(window=WINDOW, min_action_steps=4)
# The noise the tests add to otherwise straight lines, so t statistics are finite.
WOBBLE = (0.0, 0.3, -0.2, 0.1, -0.3, 0.2, 0.0, -0.1)


def wait_steps(gain: float, count: int = 4) -> list[StepOutcome]:
    """Honest steps: the reward is the accuracy gain."""
    return [StepOutcome(Action.WAIT, gain / 100, gain) for _ in range(count)]


def suspicions(events: EventRecorder, kind: str) -> list[dict[str, Any]]:
    return [
        e.data for e in events.of_type(EventType.REWARD_HACKING_SUSPECTED) if e.data["kind"] == kind
    ]


def test_trend_of_a_line_and_of_noise() -> None:
    assert trend([1.0, 2.0]) is None
    assert trend([3.0, 3.0, 3.0]) == Trend(0.0, 0.0)
    line = trend([1.0, 3.0, 5.0, 7.0])
    assert line is not None and line.slope == pytest.approx(2.0) and line.t == math.inf
    noisy = trend([1.0 + 0.5 * i + w for i, w in enumerate(WOBBLE)])
    assert noisy is not None and noisy.slope == pytest.approx(0.5, abs=0.05) and noisy.t > 5
    falling = trend([10.0 - i + w for i, w in enumerate(WOBBLE)])
    assert falling is not None and falling.t < -5


def test_rising_reward_with_flat_accuracy_is_suspected_once(events: EventRecorder) -> None:
    detector = RewardHackingDetector(CONFIG)
    for batch in range(1, 9):
        detector.observe(
            batch, wait_steps(0.0), 0.1 * batch + 0.01 * WOBBLE[batch - 1], 70.0 + WOBBLE[batch - 1]
        )
    found = suspicions(events, "trend_divergence")
    assert len(found) == 1, "raised once while the divergence lasts"
    data = found[0]
    assert data["batch"] == WINDOW, "raised as soon as the window is full"
    assert data["window"] == WINDOW
    assert data["reward_trend"] == pytest.approx(0.1, abs=0.01)
    assert data["reward_trend_t"] >= CONFIG.reward_trend_t
    assert data["accuracy_trend_t"] <= CONFIG.accuracy_trend_t
    assert abs(data["accuracy_trend"]) < 0.2
    event = events.of_type(EventType.REWARD_HACKING_SUSPECTED)[0]
    assert event.severity == Severity.WARNING
    assert "reward rising" in event.message and f"over {WINDOW} batches" in event.message


def test_divergence_raised_again_after_it_stopped(events: EventRecorder) -> None:
    detector = RewardHackingDetector(CONFIG)
    rewards = [0.1, 0.2, 0.3, 0.4, 0.5, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0]
    for batch, reward in enumerate(rewards, start=1):
        wobble = WOBBLE[batch % len(WOBBLE)]
        detector.observe(batch, wait_steps(0.0), reward + 0.001 * wobble, 70.0 + wobble)
    assert [d["batch"] for d in suspicions(events, "trend_divergence")] == [5, 12]


def test_reward_rising_with_accuracy_is_learning_not_hacking(events: EventRecorder) -> None:
    detector = RewardHackingDetector(CONFIG)
    for batch in range(1, 11):
        wobble = WOBBLE[batch % len(WOBBLE)]
        detector.observe(
            batch, wait_steps(1.0), 0.1 * batch + 0.01 * wobble, 60.0 + 2 * batch + wobble
        )
    assert events.of_type(EventType.REWARD_HACKING_SUSPECTED) == []


def test_an_action_earning_reward_without_accuracy_is_suspected(events: EventRecorder) -> None:
    detector = RewardHackingDetector(CONFIG)
    # WAIT earns what it gains; each germination (any blueprint) earns a 0.5 bonus, gains nothing.
    germinations = [
        StepOutcome(Action.GERMINATE_CONV_LIGHT, 0.5, 0.0),
        StepOutcome(Action.GERMINATE_NORM, 0.5, -0.1),
    ]
    for batch in range(1, 4):
        detector.observe(batch, wait_steps(2.0) + germinations, 1.0, 70.0)
    found = suspicions(events, "action_share")
    assert len(found) == 1
    data = found[0]
    assert data["batch"] == 2, "four germinations (min_action_steps) are in the window at batch 2"
    assert data["dominant_action"] == "GERMINATE"
    # reward: WAIT 2 x 4 x 0.02 = 0.16, GERMINATE 2 x 1.0 = 2.0
    assert data["dominant_share"] == pytest.approx(2.0 / 2.16)
    assert data["dominant_accuracy_share"] == 0.0
    assert data["reward_shares"] == pytest.approx({"WAIT": 0.16 / 2.16, "GERMINATE": 2.0 / 2.16})
    assert data["window"] == 2
    message = events.of_type(EventType.REWARD_HACKING_SUSPECTED)[0].message
    assert message.startswith("GERMINATE earns 93% of the reward but 0% of the accuracy")


def test_an_action_whose_reward_matches_its_gain_is_not_suspected(events: EventRecorder) -> None:
    detector = RewardHackingDetector(CONFIG)
    for batch in range(1, 10):
        steps = wait_steps(0.5) + [StepOutcome(Action.CULL, 0.03, 3.0) for _ in range(4)]
        detector.observe(batch, steps, 0.1, 70.0)
    assert events.of_type(EventType.REWARD_HACKING_SUSPECTED) == []


def test_reward_paid_for_by_accuracy_is_not_suspected_however_it_is_shared(
    events: EventRecorder,
) -> None:
    # WAIT pays the seed's rent, so its net reward is negative; FOSSILIZE then holds all of
    # the little positive reward there is, yet every point of it was bought with accuracy.
    detector = RewardHackingDetector(CONFIG)
    waits = [StepOutcome(Action.WAIT, 0.001 - 0.002, 0.1) for _ in range(20)]
    fossilizes = [StepOutcome(Action.FOSSILIZE, 0.0025 - 0.0005, 0.25) for _ in range(4)]
    for batch in range(1, 10):
        detector.observe(batch, waits + fossilizes, 0.01, 70.0)
    assert events.of_type(EventType.REWARD_HACKING_SUSPECTED) == []


def test_a_lopsided_share_needs_enough_steps(events: EventRecorder) -> None:
    detector = RewardHackingDetector(RewardHackingConfig(window=WINDOW, min_action_steps=10))
    for batch in range(1, 5):
        detector.observe(batch, [*wait_steps(1.0), StepOutcome(Action.CULL, 1.0, 0.0)], 0.1, 70.0)
    assert events.of_type(EventType.REWARD_HACKING_SUSPECTED) == []
    detector.observe(5, wait_steps(1.0) + [StepOutcome(Action.CULL, 1.0, 0.0)] * 6, 0.1, 70.0)
    assert [d["dominant_action"] for d in suspicions(events, "action_share")] == ["CULL"]


def test_action_kinds_group_blueprints() -> None:
    assert {action_kind(a) for a in Action} == {"WAIT", "GERMINATE", "FOSSILIZE", "CULL"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"window": 2}, "window must be at least 3, got 2"),
        ({"share": 0.0}, "share must be greater than 0 and at most 1, got 0"),
        ({"share": 1.5}, "share must be greater than 0 and at most 1, got 1.5"),
        ({"share_ratio": 0.5}, "share_ratio must be at least 1, got 0.5"),
        ({"min_action_steps": 0}, "min_action_steps must be at least 1, got 0"),
        ({"reward_trend_t": math.nan}, "reward_trend_t must be finite, got nan"),
    ],
)
def test_config_is_validated(changes: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as error:
        RewardHackingConfig(**changes)  # type: ignore[arg-type]
    assert str(error.value) == f"RewardHackingConfig.{message}"
