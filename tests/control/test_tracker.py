"""SignalTracker: per-epoch signals and the stabilization latch (docs/training.md).

An epoch is stable when the relative val-loss improvement over the previous epoch is below
`stabilization_threshold` and the loss did not spike (>= 1.5 x previous); after
`stabilization_epochs` consecutive stable epochs the host is stabilized once and
TAMIYO_INITIATED is emitted once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from helpers import EventRecorder

from app.contracts.events import EventType, Severity, TelemetryEvent
from app.contracts.signals import TrainingSignals
from app.control.tracker import SignalTracker, TrackerConfig

MESSAGE = "Host stabilized - germination now allowed"
DATA_KEYS = {"env_id", "epoch", "stable_count", "stabilization_epochs", "val_loss"}


def feed(
    tracker: SignalTracker,
    losses: Sequence[float],
    first_epoch: int = 1,
    accuracies: Sequence[float] | None = None,
) -> list[TrainingSignals]:
    """Feed one epoch per val loss (epochs numbered from `first_epoch`); train metrics are
    derived from the val metrics so that they are distinguishable in the signals."""
    accuracies = accuracies if accuracies is not None else [50.0] * len(losses)
    return [
        tracker.update(
            epoch=first_epoch + i,
            train_loss=loss * 0.9,
            train_accuracy=accuracy + 1.0,
            val_loss=loss,
            val_accuracy=accuracy,
        )
        for i, (loss, accuracy) in enumerate(zip(losses, accuracies, strict=True))
    ]


def initiated(events: EventRecorder) -> list[TelemetryEvent]:
    return events.of_type(EventType.TAMIYO_INITIATED)


def first_stabilized_epoch(signals: Sequence[TrainingSignals]) -> int | None:
    return next((s.epoch for s in signals if s.host_stabilized), None)


def geometric(start: float, factors: Sequence[float]) -> list[float]:
    losses = [start]
    for factor in factors:
        losses.append(losses[-1] * factor)
    return losses


# ---------------------------------------------------------------- explosive growth


def test_no_initiation_during_explosive_growth(events: EventRecorder) -> None:
    # val loss falls 10-30 % every epoch for 30 epochs: never a stable epoch
    factors = [0.9, 0.7, 0.8, 0.75, 0.85, 0.72] * 5
    tracker = SignalTracker(env_id=0)
    signals = feed(tracker, geometric(10.0, factors))

    assert events == []
    assert not tracker.stabilized
    assert not any(s.host_stabilized for s in signals)


def test_a_relative_improvement_of_exactly_the_threshold_is_not_stable(
    events: EventRecorder,
) -> None:
    # 100 -> 97 improves by exactly 0.03 ((100 - 97) / 100 == 0.03 in floats), which is not
    # below the threshold; 97 -> 100 is a rise (stable), so no 3 stable epochs in a row
    tracker = SignalTracker()
    signals = feed(tracker, [100.0, 97.0] * 6)
    assert initiated(events) == []
    assert first_stabilized_epoch(signals) is None


# ---------------------------------------------------------------- the latch fires once


def test_initiated_exactly_once_on_stabilization_with_the_contract_data(
    events: EventRecorder,
) -> None:
    # epochs 1..3 improve 25 %, 20 %; epochs 4, 5, 6 improve < 1 %: stable x3 at epoch 6
    losses = [2.0, 1.5, 1.2, 1.19, 1.18, 1.17]
    tracker = SignalTracker(env_id=3)
    signals = feed(tracker, losses, first_epoch=1)

    assert [s.host_stabilized for s in signals] == [False] * 5 + [True]
    assert tracker.stabilized
    [event] = events
    assert event.event_type == EventType.TAMIYO_INITIATED
    assert event.epoch == 6
    assert event.message == MESSAGE
    assert event.severity == Severity.INFO
    assert event.seed_id is None
    assert event.slot_id is None
    assert set(event.data) == DATA_KEYS
    assert event.data == {
        "env_id": 3,
        "epoch": 6,
        "stable_count": 3,
        "stabilization_epochs": 3,
        "val_loss": 1.17,
    }


def test_initiation_epoch_is_the_epoch_passed_in(events: EventRecorder) -> None:
    tracker = SignalTracker(env_id=0)
    feed(tracker, [1.0, 1.0, 1.0, 1.0], first_epoch=40)
    [event] = initiated(events)
    assert event.epoch == 43
    assert event.data["epoch"] == 43
    assert event.data["val_loss"] == 1.0


def test_the_latch_never_fires_a_second_time(events: EventRecorder) -> None:
    tracker = SignalTracker(env_id=1)
    signals = feed(tracker, [1.0, 1.0, 1.0, 1.0], first_epoch=1)
    assert len(initiated(events)) == 1
    # a spike, fast growth, then long stable runs: still one event, still stabilized
    later = [5.0, 3.0, 2.0, 1.5] + [1.5] * 20 + [4.0] + [4.0] * 10
    signals += feed(tracker, later, first_epoch=5)

    assert len(initiated(events)) == 1
    assert len(events) == 1
    assert all(s.host_stabilized for s in signals[3:])
    assert tracker.stabilized


def test_the_latch_is_per_tracker(events: EventRecorder) -> None:
    first, second = SignalTracker(env_id=0), SignalTracker(env_id=1)
    feed(first, [1.0] * 6)
    feed(second, [1.0] * 6)
    assert [e.data["env_id"] for e in initiated(events)] == [0, 1]


# ---------------------------------------------------------------- resets


def test_a_spike_resets_the_stable_count(events: EventRecorder) -> None:
    # stable, stable, spike (1.5 >= 1.5 x 0.98), then three stable epochs: fires at epoch 7
    losses = [1.0, 0.99, 0.98, 1.5, 1.49, 1.48, 1.47]
    tracker = SignalTracker(env_id=0)
    signals = feed(tracker, losses, first_epoch=1)

    assert first_stabilized_epoch(signals) == 7
    [event] = initiated(events)
    assert event.epoch == 7
    assert event.data["stable_count"] == 3
    assert event.data["val_loss"] == 1.47


def test_a_rise_below_the_spike_factor_counts_as_stable(events: EventRecorder) -> None:
    # the same series as above with a 1.4 x rise instead of a spike: fires at epoch 4,
    # which shows that the reset above is due to the spike
    losses = [1.0, 0.99, 0.98, 0.98 * 1.4, 1.37, 1.36, 1.35]
    tracker = SignalTracker(env_id=0)
    signals = feed(tracker, losses, first_epoch=1)
    assert first_stabilized_epoch(signals) == 4
    assert [e.epoch for e in initiated(events)] == [4]


def test_exactly_the_spike_factor_is_a_spike(events: EventRecorder) -> None:
    # 2.0 -> 3.0 is exactly 1.5 x previous: a spike, which resets the count
    losses = [2.0, 2.0, 2.0, 3.0, 3.0, 3.0]
    tracker = SignalTracker()
    signals = feed(tracker, losses, first_epoch=1)
    assert first_stabilized_epoch(signals) is None
    assert initiated(events) == []
    feed(tracker, [3.0], first_epoch=7)
    assert [e.epoch for e in initiated(events)] == [7]


def test_a_non_stable_epoch_in_between_resets_the_stable_count(
    events: EventRecorder,
) -> None:
    # stable, stable, an 8 % improvement, then three stable epochs: fires at epoch 7
    losses = [1.0, 0.99, 0.98, 0.90, 0.89, 0.88, 0.87]
    tracker = SignalTracker(env_id=0)
    signals = feed(tracker, losses, first_epoch=1)

    assert first_stabilized_epoch(signals) == 7
    [event] = initiated(events)
    assert event.epoch == 7
    assert event.data["stable_count"] == 3


def test_the_first_epoch_is_never_stable(events: EventRecorder) -> None:
    # with stabilization_epochs=1 the earliest firing is the second epoch (a previous loss
    # is needed to measure an improvement)
    tracker = SignalTracker(TrackerConfig(stabilization_epochs=1))
    signals = feed(tracker, [1.0, 1.0], first_epoch=1)
    assert [s.host_stabilized for s in signals] == [False, True]
    [event] = initiated(events)
    assert event.epoch == 2
    assert event.data["stable_count"] == 1
    assert event.data["stabilization_epochs"] == 1


# ---------------------------------------------------------------- env_id


def test_env_id_is_null_when_the_tracker_has_none(events: EventRecorder) -> None:
    tracker = SignalTracker()
    feed(tracker, [1.0] * 4)
    [event] = initiated(events)
    assert "env_id" in event.data
    assert event.data["env_id"] is None
    assert set(event.data) == DATA_KEYS


def test_env_id_zero_is_kept(events: EventRecorder) -> None:
    feed(SignalTracker(env_id=0), [1.0] * 4)
    [event] = initiated(events)
    assert event.data["env_id"] == 0


# ---------------------------------------------------------------- custom configuration


def test_a_higher_threshold_stabilizes_a_slowly_improving_host(
    events: EventRecorder,
) -> None:
    losses = geometric(1.0, [0.95] * 10)  # a steady 5 % improvement per epoch
    default = feed(SignalTracker(env_id=0), losses, first_epoch=1)
    assert first_stabilized_epoch(default) is None
    assert initiated(events) == []

    loose = SignalTracker(TrackerConfig(stabilization_threshold=0.1), env_id=1)
    signals = feed(loose, losses, first_epoch=1)
    assert first_stabilized_epoch(signals) == 4
    [event] = initiated(events)
    assert event.data["env_id"] == 1
    assert event.data["epoch"] == 4
    assert event.data["val_loss"] == losses[3]


def test_a_lower_threshold_delays_stabilization(events: EventRecorder) -> None:
    # 2 % per epoch is stable at the default 0.03 but not at 0.01
    losses = geometric(1.0, [0.98] * 3) + [0.98**3] * 3
    default = feed(SignalTracker(), losses, first_epoch=1)
    assert first_stabilized_epoch(default) == 4
    strict = feed(SignalTracker(TrackerConfig(stabilization_threshold=0.01)), losses, 1)
    assert first_stabilized_epoch(strict) == 7
    assert [e.epoch for e in initiated(events)] == [4, 7]


@pytest.mark.parametrize("epochs", [1, 2, 5, 8])
def test_custom_stabilization_epochs(events: EventRecorder, epochs: int) -> None:
    tracker = SignalTracker(TrackerConfig(stabilization_epochs=epochs), env_id=2)
    signals = feed(tracker, [1.0] * 12, first_epoch=0)
    # epoch 0 has no previous loss; epochs 1..n are the n stable ones
    assert first_stabilized_epoch(signals) == epochs
    [event] = initiated(events)
    assert event.data == {
        "env_id": 2,
        "epoch": epochs,
        "stable_count": epochs,
        "stabilization_epochs": epochs,
        "val_loss": 1.0,
    }


def test_custom_spike_factor(events: EventRecorder) -> None:
    # a 1.2 x rise is not a spike by default but is at spike_factor=1.2
    losses = [1.0, 1.0, 1.2, 1.2, 1.2]
    assert first_stabilized_epoch(feed(SignalTracker(), losses, 1)) == 4
    strict = SignalTracker(TrackerConfig(spike_factor=1.2))
    assert first_stabilized_epoch(feed(strict, losses, 1)) is None


# ---------------------------------------------------------------- signals


def test_signal_fields() -> None:
    losses = [2.0, 1.5, 1.6, 1.25, 1.0, 1.1, 0.75]
    accuracies = [50.0, 60.0, 60.25, 60.5, 62.0, 61.0, 62.25]
    tracker = SignalTracker()
    signals = feed(tracker, losses, first_epoch=1, accuracies=accuracies)

    assert [s.epoch for s in signals] == [1, 2, 3, 4, 5, 6, 7]
    assert [s.val_loss for s in signals] == losses
    assert [s.val_accuracy for s in signals] == accuracies
    assert [s.train_loss for s in signals] == [loss * 0.9 for loss in losses]
    assert [s.train_accuracy for s in signals] == [a + 1.0 for a in accuracies]
    # loss_delta is previous - current (positive = improvement), 0 at the first epoch
    assert [s.loss_delta for s in signals] == pytest.approx(
        [0.0, 0.5, -0.1, 0.35, 0.25, -0.1, 0.35]
    )
    # accuracy_delta is current - previous, 0 at the first epoch
    assert [s.accuracy_delta for s in signals] == pytest.approx(
        [0.0, 10.0, 0.25, 0.25, 1.5, -1.0, 1.25]
    )
    assert [s.best_val_loss for s in signals] == [2.0, 1.5, 1.5, 1.25, 1.0, 1.0, 0.75]
    assert [s.best_val_accuracy for s in signals] == [50.0, 60.0, 60.25, 60.5, 62.0, 62.0, 62.25]
    # plateau: epochs since the best accuracy last rose by more than 0.5 pp
    assert [s.plateau_epochs for s in signals] == [0, 0, 1, 2, 0, 1, 2]
    # histories: the last 5 values, oldest first
    assert [len(s.loss_history) for s in signals] == [1, 2, 3, 4, 5, 5, 5]
    assert signals[2].loss_history == (2.0, 1.5, 1.6)
    assert signals[-1].loss_history == tuple(losses[-5:])
    assert signals[-1].accuracy_history == tuple(accuracies[-5:])
    assert all(len(s.accuracy_history) <= 5 for s in signals)
    assert not any(s.host_stabilized for s in signals)


def test_histories_never_exceed_five() -> None:
    tracker = SignalTracker()
    losses = [float(100 - i) for i in range(30)]
    accuracies = [float(i) for i in range(30)]
    signals = feed(tracker, losses, accuracies=accuracies)
    assert max(len(s.loss_history) for s in signals) == 5
    assert max(len(s.accuracy_history) for s in signals) == 5
    assert signals[-1].loss_history == (75.0, 74.0, 73.0, 72.0, 71.0)
    assert signals[-1].accuracy_history == (25.0, 26.0, 27.0, 28.0, 29.0)


def test_plateau_counter_grows_while_accuracy_stalls() -> None:
    tracker = SignalTracker()
    signals = feed(tracker, [1.0] * 6, accuracies=[70.0, 70.5, 70.4, 69.0, 71.25, 71.8])
    # 70.5 is not more than 0.5 above 70.0; 71.25 is (best 70.5); 71.8 is (best 71.25)
    assert [s.plateau_epochs for s in signals] == [0, 1, 2, 3, 0, 0]


def test_host_stabilized_in_signals_follows_the_latch(events: EventRecorder) -> None:
    tracker = SignalTracker()
    signals = feed(tracker, [1.0, 1.0, 1.0, 1.0, 9.0, 0.5])
    assert [s.host_stabilized for s in signals] == [False, False, False, True, True, True]


# ---------------------------------------------------------------- NaN / Inf


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_val_loss_is_never_stable(events: EventRecorder, bad: float) -> None:
    # stable, then a bad loss (not stable, and not a valid baseline for the next epoch),
    # then three stable epochs: fires only at epoch 7
    losses = [1.0, 1.0, bad, 1.0, 1.0, 1.0, 1.0]
    tracker = SignalTracker()
    signals = feed(tracker, losses, first_epoch=1)
    assert first_stabilized_epoch(signals) == 7
    assert [e.epoch for e in initiated(events)] == [7]


def test_a_run_of_nan_losses_never_stabilizes(events: EventRecorder) -> None:
    tracker = SignalTracker(TrackerConfig(stabilization_epochs=1))
    signals = feed(tracker, [math.nan] * 10)
    assert not tracker.stabilized
    assert not any(s.host_stabilized for s in signals)
    assert events == []


def test_nan_loss_does_not_poison_the_best_loss() -> None:
    tracker = SignalTracker()
    signals = feed(tracker, [1.0, math.nan, 0.5])
    assert [s.best_val_loss for s in signals] == [1.0, 1.0, 0.5]
