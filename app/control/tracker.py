"""Per-epoch host signals and the stabilization latch (docs/training.md)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from app.contracts.events import EventType, TelemetryEvent
from app.contracts.signals import TrainingSignals
from app.settings import check
from app.telemetry import emit


@dataclass(frozen=True)
class TrackerConfig:
    stabilization_threshold: float = 0.03
    stabilization_epochs: int = 3
    spike_factor: float = 1.5
    plateau_tolerance: float = 0.5
    history_length: int = 5

    def __post_init__(self) -> None:
        check(self, "stabilization_threshold", gt=0, lt=1)
        check(self, "stabilization_epochs", "history_length", ge=1)
        check(self, "spike_factor", gt=1)


class SignalTracker:
    """Turns each epoch's metrics into TrainingSignals and latches host stabilization.

    Germination is pointless while the host is still learning fast (a seed's effect is
    drowned by the host's own progress), so the controller may only germinate once the
    host is *stabilized*: `stabilization_epochs` consecutive epochs whose relative val-loss
    improvement is below `stabilization_threshold` without a loss spike. The latch fires
    once per tracker and emits TAMIYO_INITIATED.
    """

    def __init__(self, config: TrackerConfig | None = None, env_id: int | None = None) -> None:
        self.config = config or TrackerConfig()
        self.env_id = env_id
        self.stabilized = False
        self._stable_count = 0
        self._previous_loss: float | None = None
        self._previous_accuracy: float | None = None
        self._best_accuracy = -math.inf
        self._best_loss = math.inf
        self._plateau_epochs = 0
        self._losses: deque[float] = deque(maxlen=self.config.history_length)
        self._accuracies: deque[float] = deque(maxlen=self.config.history_length)

    def update(
        self,
        epoch: int,
        train_loss: float,
        train_accuracy: float,
        val_loss: float,
        val_accuracy: float,
    ) -> TrainingSignals:
        loss_delta = 0.0 if self._previous_loss is None else self._previous_loss - val_loss
        accuracy_delta = (
            0.0 if self._previous_accuracy is None else val_accuracy - self._previous_accuracy
        )
        self._update_plateau(val_accuracy)
        self._update_stabilization(epoch, val_loss)
        self._previous_loss = val_loss
        self._previous_accuracy = val_accuracy
        self._best_loss = min(self._best_loss, val_loss)
        self._losses.append(val_loss)
        self._accuracies.append(val_accuracy)
        return TrainingSignals(
            epoch=epoch,
            train_loss=train_loss,
            train_accuracy=train_accuracy,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            loss_delta=loss_delta,
            accuracy_delta=accuracy_delta,
            plateau_epochs=self._plateau_epochs,
            best_val_accuracy=self._best_accuracy,
            best_val_loss=self._best_loss,
            loss_history=tuple(self._losses),
            accuracy_history=tuple(self._accuracies),
            host_stabilized=self.stabilized,
        )

    def _update_plateau(self, val_accuracy: float) -> None:
        if val_accuracy > self._best_accuracy + self.config.plateau_tolerance:
            self._plateau_epochs = 0
        else:
            self._plateau_epochs += 1
        self._best_accuracy = max(self._best_accuracy, val_accuracy)

    def _update_stabilization(self, epoch: int, val_loss: float) -> None:
        if self.stabilized or self._previous_loss is None:
            return
        if self._is_stable_epoch(self._previous_loss, val_loss):
            self._stable_count += 1
        else:
            self._stable_count = 0
        if self._stable_count >= self.config.stabilization_epochs:
            self.stabilized = True
            self._emit_initiated(epoch, val_loss)

    def _is_stable_epoch(self, previous: float, current: float) -> bool:
        if not (math.isfinite(previous) and math.isfinite(current)) or previous <= 0:
            return False
        relative_improvement = (previous - current) / previous
        spiked = current >= self.config.spike_factor * previous
        return relative_improvement < self.config.stabilization_threshold and not spiked

    def _emit_initiated(self, epoch: int, val_loss: float) -> None:
        emit(
            TelemetryEvent(
                event_type=EventType.TAMIYO_INITIATED,
                message="Host stabilized - germination now allowed",
                epoch=epoch,
                data={
                    "env_id": self.env_id,
                    "epoch": epoch,
                    "stable_count": self._stable_count,
                    "stabilization_epochs": self.config.stabilization_epochs,
                    "val_loss": val_loss,
                },
            )
        )
