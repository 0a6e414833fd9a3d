"""Batch-level progress detection: plateau, improvement or degradation (docs/training.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean

from app.contracts.events import EventType, TelemetryEvent
from app.settings import check
from app.telemetry import emit


@dataclass(frozen=True)
class ProgressThresholds:
    """Thresholds in percentage points of the smoothed batch-mean accuracy change."""

    plateau: float = 0.5
    improvement: float = 2.0

    def __post_init__(self) -> None:
        check(self, "improvement", finite=True)
        check(self, "plateau", ge=0, le="improvement")


HISTORY_LENGTH = 10


class ProgressDetector:
    """Compares the mean of the last three batch accuracies with the three before them.

    Single batches are noisy (each is a handful of episodes), so the detector needs six
    batches before it says anything; the caller keeps the last HISTORY_LENGTH of them.
    """

    window = 3

    def __init__(self, thresholds: ProgressThresholds | None = None) -> None:
        self.thresholds = thresholds or ProgressThresholds()

    def observe(
        self, batch: int, accuracies: Sequence[float], episodes_completed: int
    ) -> EventType | None:
        """Classify the trend of the batch-mean `accuracies` (oldest first, the current
        batch last); emit and return the detected event type, if any."""
        history = list(accuracies)[-HISTORY_LENGTH:]
        if len(history) < 2 * self.window:
            return None
        rolling_avg_accuracy = fmean(history)
        recent_avg = fmean(history[-self.window :])
        older_avg = fmean(history[-2 * self.window : -self.window])
        delta = recent_avg - older_avg
        event_type = self._classify(delta)
        if event_type is None:
            return None
        emit(
            TelemetryEvent(
                event_type=event_type,
                message=f"smoothed accuracy delta {delta:+.2f} pp",
                data={
                    "batch": batch,
                    "smoothed_delta": delta,
                    "recent_avg": recent_avg,
                    "older_avg": older_avg,
                    "rolling_avg_accuracy": rolling_avg_accuracy,
                    "episodes_completed": episodes_completed,
                },
            )
        )
        return event_type

    def _classify(self, delta: float) -> EventType | None:
        if abs(delta) < self.thresholds.plateau:
            return EventType.PLATEAU_DETECTED
        if delta < -self.thresholds.improvement:
            return EventType.DEGRADATION_DETECTED
        if delta > self.thresholds.improvement:
            return EventType.IMPROVEMENT_DETECTED
        return None
