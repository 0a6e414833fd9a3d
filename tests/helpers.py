"""Helpers shared by tests in several directories, imported as `from helpers import ...`
(tests/ is on sys.path: pytest puts it there when it imports tests/conftest.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from app.contracts.events import EventType, Severity, TelemetryEvent

DOCS = Path(__file__).resolve().parents[1] / "docs"

# The PPO statistics an update reports: PPO_UPDATE_COMPLETED fields and esper_ppo_* gauges.
PPO_STATISTICS = (
    "policy_loss",
    "value_loss",
    "entropy",
    "entropy_coef",
    "approx_kl",
    "clip_fraction",
    "ratio_max",
    "ratio_min",
    "ratio_std",
    "explained_variance",
)

# The metric table of docs/opentelemetry.md: Prometheus name -> its labels besides run_id.
PPO_GAUGES = tuple(f"esper_ppo_{name}" for name in PPO_STATISTICS)
HISTOGRAMS = (
    "esper_batch_duration_seconds",
    "esper_epoch_duration_seconds",
    "esper_ppo_update_duration_seconds",
)
METRIC_TABLE: dict[str, frozenset[str]] = {
    **{name: frozenset() for name in PPO_GAUGES},
    "esper_training_accuracy": frozenset({"window"}),
    "esper_training_reward": frozenset(),
    "esper_episodes_total": frozenset(),
    "esper_events_total": frozenset({"event_type", "severity"}),
    "esper_anomalies_total": frozenset({"anomaly_type"}),
    "esper_seeds": frozenset({"stage"}),
    **{name: frozenset() for name in HISTOGRAMS},
    "esper_telemetry_sink_errors_total": frozenset({"sink"}),
}


@dataclass(frozen=True)
class DocumentedEvent:
    """One event type as docs/events.md documents it."""

    severity: Severity
    fields: tuple[str, ...]


def documented_events() -> dict[EventType, DocumentedEvent]:
    """The table "Event types and their data" of docs/events.md, by event type."""
    text = (DOCS / "events.md").read_text(encoding="utf-8")
    section = text.split("## Event types and their data", 1)[1].split("\n## ", 1)[0]
    table: dict[EventType, DocumentedEvent] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        documented = DocumentedEvent(Severity(cells[1]), tuple(re.findall(r"`(\w+)`", cells[2])))
        for name in re.findall(r"`(\w+)`", cells[0]):
            table[EventType(name)] = documented
    return table


# The data fields docs/events.md lists for these events.
_DOCUMENTED = documented_events()
PPO_FIELDS = _DOCUMENTED[EventType.PPO_UPDATE_COMPLETED].fields
ANOMALY_FIELDS = _DOCUMENTED[EventType.RATIO_EXPLOSION_DETECTED].fields
PROGRESS_FIELDS = _DOCUMENTED[EventType.PLATEAU_DETECTED].fields
# What SEED_FOSSILIZED and SEED_CULLED share (they add params_added or reason).
SEED_OUTCOME_FIELDS = tuple(
    name
    for name in _DOCUMENTED[EventType.SEED_FOSSILIZED].fields
    if name in _DOCUMENTED[EventType.SEED_CULLED].fields
)


class EventRecorder(list[TelemetryEvent]):
    """An `app.telemetry` event handler that keeps every event it is handed, in order.

    It is the list of those events itself, so tests compare, index and unpack it directly.
    """

    def emit(self, event: TelemetryEvent) -> None:
        self.append(event)

    def of_type(self, event_type: EventType) -> list[TelemetryEvent]:
        """The recorded events of `event_type`, in order."""
        return [event for event in self if event.event_type == event_type]
