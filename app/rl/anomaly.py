"""Anomaly detection over PPO update statistics, and the telemetry escalation it triggers.

The detector only classifies; `report` turns anomalies into warning events and emits them,
and `TelemetryEscalation` tells the training loop to collect DEBUG detail for a while.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app import telemetry
from app.contracts.events import EventType, Severity, TelemetryEvent, TelemetryLevel
from app.settings import check

if TYPE_CHECKING:  # ppo_statistics loads torch; readers of the thresholds need no torch
    from app.rl.ppo_statistics import PPOUpdateMetrics


@dataclass(frozen=True)
class AnomalyThresholds:
    """When an update counts as unhealthy, and how many updates an anomaly escalates.

    `value_warmup_updates`: the critic's first updates, whose explained variance is not
    judged. A fresh critic has never seen a return, and one fitted on a few batches of 84
    steps predicts the next batch poorly while the policy it values keeps moving: over the
    default run's 8 updates it explained -0.03, 0.36, 0.48, -0.01, 0.02, 0.36, 0.02 and
    -0.42 of the variance. A warning that fired on half the updates of every run would
    teach users to ignore it. The count is of the agent's updates, kept in checkpoints, so
    a resumed critic is judged at once.
    """

    ratio_explosion: float = 5.0
    ratio_collapse: float = 0.1
    value_collapse: float = 0.1
    value_warmup_updates: int = 8
    grad_vanishing: float = 1e-7
    grad_exploding: float = 100.0
    escalation_updates: int = 3

    def __post_init__(self) -> None:
        check(self, "escalation_updates", "value_warmup_updates", ge=0)


@dataclass(frozen=True)
class Anomaly:
    anomaly_type: str
    event_type: EventType
    detail: str


class AnomalyDetector:
    """Classifies one update's statistics; NaN statistics fail no comparison but the
    NaN/Inf flags, so a broken update is reported once, as numerical instability."""

    def __init__(self, thresholds: AnomalyThresholds | None = None) -> None:
        self.thresholds = thresholds or AnomalyThresholds()

    def check(self, metrics: PPOUpdateMetrics) -> list[Anomaly]:
        limits = self.thresholds
        found = []
        if metrics.ratio_max > limits.ratio_explosion:
            detail = f"ratio_max={metrics.ratio_max:.3f} > {limits.ratio_explosion}"
            found.append(Anomaly("ratio_explosion", EventType.RATIO_EXPLOSION_DETECTED, detail))
        if metrics.ratio_min < limits.ratio_collapse:
            detail = f"ratio_min={metrics.ratio_min:.3f} < {limits.ratio_collapse}"
            found.append(Anomaly("ratio_collapse", EventType.RATIO_COLLAPSE_DETECTED, detail))
        warm = metrics.train_steps > limits.value_warmup_updates
        if warm and metrics.explained_variance < limits.value_collapse:
            detail = (
                f"explained_variance={metrics.explained_variance:.3f} < {limits.value_collapse}"
            )
            found.append(Anomaly("value_collapse", EventType.VALUE_COLLAPSE_DETECTED, detail))
        if metrics.has_nan or metrics.has_inf:
            found.append(_numerical_instability(metrics))
        if metrics.grad_norm < limits.grad_vanishing:
            detail = f"grad_norm={metrics.grad_norm:.3g} < {limits.grad_vanishing}"
            found.append(
                Anomaly("gradient_pathology", EventType.GRADIENT_PATHOLOGY_DETECTED, detail)
            )
        if metrics.grad_norm > limits.grad_exploding:
            detail = f"grad_norm={metrics.grad_norm:.3f} > {limits.grad_exploding}"
            found.append(
                Anomaly("gradient_pathology", EventType.GRADIENT_PATHOLOGY_DETECTED, detail)
            )
        return found


def _numerical_instability(metrics: PPOUpdateMetrics) -> Anomaly:
    kinds = [name for name, seen in (("NaN", metrics.has_nan), ("Inf", metrics.has_inf)) if seen]
    detail = f"{' and '.join(kinds)} in losses, ratios or gradients; those minibatches skipped"
    return Anomaly("numerical_instability", EventType.NUMERICAL_INSTABILITY_DETECTED, detail)


def anomaly_event(anomaly: Anomaly, metrics: PPOUpdateMetrics) -> TelemetryEvent:
    """The warning event for an anomaly (docs/events.md); NaN statistics stay float NaN."""
    data: dict[str, Any] = {
        "anomaly_type": anomaly.anomaly_type,
        "detail": anomaly.detail,
        "ratio_max": metrics.ratio_max,
        "ratio_min": metrics.ratio_min,
        "explained_variance": metrics.explained_variance,
        "train_steps": metrics.train_steps,
        "approx_kl": metrics.approx_kl,
        "clip_fraction": metrics.clip_fraction,
        "entropy": metrics.entropy,
        "grad_norm": metrics.grad_norm,
    }
    return TelemetryEvent(
        event_type=anomaly.event_type,
        message=f"{anomaly.anomaly_type}: {anomaly.detail}",
        data=data,
        severity=Severity.WARNING,
    )


def report(anomalies: list[Anomaly], metrics: PPOUpdateMetrics) -> list[TelemetryEvent]:
    """Emit one warning event per anomaly through app.telemetry; returns the events."""
    events = [anomaly_event(anomaly, metrics) for anomaly in anomalies]
    for event in events:
        telemetry.emit(event)
    return events


class TelemetryEscalation:
    """The telemetry level after anomalies: DEBUG for the next `updates` PPO updates.

    Per update: `tick()` once the update is done, then `escalate()` if it was anomalous,
    and read `level` before the next one. Telemetry that is OFF stays OFF.
    """

    def __init__(self, base_level: TelemetryLevel, updates: int) -> None:
        self.base_level = base_level
        self.updates = updates
        check(self, "updates", ge=0)
        self.remaining = 0

    @property
    def level(self) -> TelemetryLevel:
        if self.remaining > 0:
            return TelemetryLevel.DEBUG
        return self.base_level

    def escalate(self) -> None:
        if self.base_level != TelemetryLevel.OFF:
            self.remaining = self.updates

    def tick(self) -> None:
        self.remaining = max(self.remaining - 1, 0)
