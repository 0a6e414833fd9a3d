"""ProgressDetector: plateau, improvement and degradation of batch-mean accuracy (docs/training.md).

With the last 10 batch accuracies, once there are at least 6:
smoothed_delta = mean(last 3) - mean(previous 3); |delta| < plateau -> PLATEAU_DETECTED,
delta < -improvement -> DEGRADATION_DETECTED, delta > improvement -> IMPROVEMENT_DETECTED.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean

import pytest
from helpers import PROGRESS_FIELDS, EventRecorder

from app import telemetry
from app.contracts.events import EventType, Severity, TelemetryLevel
from app.training.progress import HISTORY_LENGTH, ProgressDetector, ProgressThresholds

PROGRESS_TYPES = {
    EventType.PLATEAU_DETECTED,
    EventType.IMPROVEMENT_DETECTED,
    EventType.DEGRADATION_DETECTED,
}


def step(older: float, recent: float) -> list[float]:
    """Six batch accuracies: three at `older`, then three at `recent`."""
    return [older] * 3 + [recent] * 3


def observe(
    accuracies: Sequence[float],
    thresholds: ProgressThresholds | None = None,
    batch: int = 7,
    episodes: int = 112,
) -> EventType | None:
    return ProgressDetector(thresholds).observe(batch, accuracies, episodes)


# ---------------------------------------------------------------- default thresholds


def test_default_thresholds() -> None:
    assert ProgressThresholds() == ProgressThresholds(plateau=0.5, improvement=2.0)
    assert HISTORY_LENGTH == 10


@pytest.mark.parametrize(
    ("older", "recent", "expected"),
    [
        (50.0, 50.0, EventType.PLATEAU_DETECTED),
        (50.0, 50.25, EventType.PLATEAU_DETECTED),
        (50.0, 49.75, EventType.PLATEAU_DETECTED),
        (50.0, 50.5, None),  # |delta| == 0.5 is not below the plateau threshold
        (50.0, 49.5, None),
        (50.0, 51.0, None),  # between the thresholds: nothing
        (50.0, 49.0, None),
        (50.0, 52.0, None),  # delta == 2.0 is not above the improvement threshold
        (50.0, 48.0, None),
        (50.0, 52.25, EventType.IMPROVEMENT_DETECTED),
        (50.0, 53.0, EventType.IMPROVEMENT_DETECTED),
        (50.0, 47.75, EventType.DEGRADATION_DETECTED),
        (53.0, 50.0, EventType.DEGRADATION_DETECTED),
        (10.0, 90.0, EventType.IMPROVEMENT_DETECTED),
        (90.0, 10.0, EventType.DEGRADATION_DETECTED),
    ],
)
def test_classification_with_default_thresholds(
    events: EventRecorder, older: float, recent: float, expected: EventType | None
) -> None:
    assert observe(step(older, recent)) == expected
    if expected is None:
        assert events == []
    else:
        [event] = events
        assert event.event_type == expected


def test_only_the_last_six_decide_the_trend(events: EventRecorder) -> None:
    # a big rise four batches back is outside the two windows of three
    accuracies = [10.0, 10.0, 10.0, 10.0, 60.0, 60.0, 60.0, 60.0, 60.0, 60.0]
    assert observe(accuracies) == EventType.PLATEAU_DETECTED
    # the windows are the last 3 against the 3 before, not the first against the last
    assert observe([60.0, 60.0, 60.0, 50.0, 50.0, 50.0, 53.0, 53.0, 53.0]) == (
        EventType.IMPROVEMENT_DETECTED
    )


# ---------------------------------------------------------------- custom thresholds


def test_a_wider_plateau_threshold(events: EventRecorder) -> None:
    accuracies = step(50.0, 51.0)  # delta 1.0
    assert observe(accuracies, ProgressThresholds(plateau=0.5)) is None
    assert events == []
    assert observe(accuracies, ProgressThresholds(plateau=1.5)) == EventType.PLATEAU_DETECTED
    assert observe(step(51.0, 50.0), ProgressThresholds(plateau=1.5)) == (
        EventType.PLATEAU_DETECTED
    )
    assert [e.event_type for e in events] == [EventType.PLATEAU_DETECTED] * 2


def test_a_narrower_plateau_threshold(events: EventRecorder) -> None:
    accuracies = step(50.0, 50.25)  # delta 0.25: a plateau by default
    assert observe(accuracies, ProgressThresholds(plateau=0.125)) is None
    assert events == []


def test_a_higher_improvement_threshold(events: EventRecorder) -> None:
    high = ProgressThresholds(improvement=5.0)
    assert observe(step(50.0, 53.0)) == EventType.IMPROVEMENT_DETECTED
    assert observe(step(50.0, 53.0), high) is None
    assert observe(step(53.0, 50.0), high) is None
    assert observe(step(50.0, 56.0), high) == EventType.IMPROVEMENT_DETECTED
    assert observe(step(56.0, 50.0), high) == EventType.DEGRADATION_DETECTED
    assert [e.event_type for e in events] == [
        EventType.IMPROVEMENT_DETECTED,
        EventType.IMPROVEMENT_DETECTED,
        EventType.DEGRADATION_DETECTED,
    ]


def test_a_lower_improvement_threshold(events: EventRecorder) -> None:
    low = ProgressThresholds(improvement=0.75)
    assert observe(step(50.0, 51.0)) is None
    assert observe(step(50.0, 51.0), low) == EventType.IMPROVEMENT_DETECTED
    assert observe(step(51.0, 50.0), low) == EventType.DEGRADATION_DETECTED
    assert len(events) == 2


# ---------------------------------------------------------------- warm-up


@pytest.mark.parametrize("length", range(6))
def test_nothing_before_six_batches(events: EventRecorder, length: int) -> None:
    detector = ProgressDetector()
    for accuracies in ([50.0] * length, [0.0, 100.0, 0.0, 100.0, 0.0][:length]):
        assert detector.observe(1, accuracies, 10) is None
    assert events == []


def test_the_sixth_batch_is_the_first_that_can_report(events: EventRecorder) -> None:
    detector = ProgressDetector()
    accuracies: list[float] = []
    results = []
    for batch, accuracy in enumerate([50.0] * 8, start=1):
        accuracies.append(accuracy)
        results.append(detector.observe(batch, accuracies, batch * 4))
    assert results == [None] * 5 + [EventType.PLATEAU_DETECTED] * 3
    assert [e.data["batch"] for e in events] == [6, 7, 8]


# ---------------------------------------------------------------- event data


def test_event_data_fields_and_values(events: EventRecorder) -> None:
    accuracies = [40.0, 44.0, 50.0, 51.0, 52.0, 55.0, 56.0, 60.0]
    result = ProgressDetector().observe(batch=12, accuracies=accuracies, episodes_completed=96)

    assert result == EventType.IMPROVEMENT_DETECTED
    [event] = events
    assert event.event_type == EventType.IMPROVEMENT_DETECTED
    assert event.severity == Severity.INFO
    assert set(event.data) == set(PROGRESS_FIELDS)
    assert event.data["batch"] == 12
    assert event.data["episodes_completed"] == 96
    assert event.data["recent_avg"] == pytest.approx((55.0 + 56.0 + 60.0) / 3)
    assert event.data["older_avg"] == pytest.approx((50.0 + 51.0 + 52.0) / 3)
    assert event.data["smoothed_delta"] == pytest.approx(57.0 - 51.0)
    assert event.data["smoothed_delta"] == pytest.approx(
        event.data["recent_avg"] - event.data["older_avg"]
    )
    assert event.data["rolling_avg_accuracy"] == pytest.approx(sum(accuracies) / 8)


def test_plateau_and_degradation_data(events: EventRecorder) -> None:
    assert observe([70.0, 70.0, 70.0, 70.25, 70.0, 70.0], batch=3, episodes=24) == (
        EventType.PLATEAU_DETECTED
    )
    assert observe([70.0, 71.0, 72.0, 65.0, 66.0, 67.0], batch=4, episodes=32) == (
        EventType.DEGRADATION_DETECTED
    )
    plateau, degradation = events
    assert plateau.data == pytest.approx(
        {
            "batch": 3,
            "smoothed_delta": 0.25 / 3,
            "recent_avg": (70.25 + 140.0) / 3,
            "older_avg": 70.0,
            "rolling_avg_accuracy": (70.0 * 5 + 70.25) / 6,
            "episodes_completed": 24,
        }
    )
    assert degradation.data == pytest.approx(
        {
            "batch": 4,
            "smoothed_delta": -5.0,
            "recent_avg": 66.0,
            "older_avg": 71.0,
            "rolling_avg_accuracy": fmean([70.0, 71.0, 72.0, 65.0, 66.0, 67.0]),
            "episodes_completed": 32,
        }
    )


def test_only_the_last_ten_accuracies_count(events: EventRecorder) -> None:
    last_ten = [60.0, 61.0, 62.0, 63.0, 64.0, 65.0, 66.0, 70.0, 70.0, 70.0]
    with_old = [0.0, 0.0, 100.0, 5.0, *last_ten]
    assert observe(with_old) == observe(last_ten) == EventType.IMPROVEMENT_DETECTED
    first, second = events
    assert first.data == second.data
    assert first.data["rolling_avg_accuracy"] == pytest.approx(sum(last_ten) / 10)
    assert first.data["rolling_avg_accuracy"] != pytest.approx(sum(with_old) / len(with_old))


def test_rolling_average_covers_all_when_fewer_than_ten(events: EventRecorder) -> None:
    for length in range(6, 11):
        accuracies = [float(10 * i) for i in range(length - 3)] + [100.0] * 3
        observe(accuracies)
        assert events[-1].data["rolling_avg_accuracy"] == pytest.approx(fmean(accuracies))
    assert len(events) == 5


def test_accepts_any_sequence_and_does_not_modify_it(events: EventRecorder) -> None:
    accuracies = tuple(step(50.0, 50.0))
    assert observe(accuracies) == EventType.PLATEAU_DETECTED
    history = [float(a) for a in range(20)]
    snapshot = list(history)
    assert observe(history) == EventType.IMPROVEMENT_DETECTED
    assert history == snapshot


def test_progress_events_pass_at_minimal_level(events: EventRecorder) -> None:
    telemetry.set_level(TelemetryLevel.MINIMAL)
    observe(step(50.0, 50.0))
    observe(step(50.0, 55.0))
    observe(step(55.0, 50.0))
    assert {e.event_type for e in events} == PROGRESS_TYPES
    telemetry.set_level(TelemetryLevel.OFF)
    assert observe(step(50.0, 50.0)) == EventType.PLATEAU_DETECTED  # still classified
    assert len(events) == 3  # but not events
