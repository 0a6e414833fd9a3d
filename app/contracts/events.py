"""Domain events and the telemetry levels that filter them (docs/events.md, a contract)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any


class EventType(StrEnum):
    """Every event the application can emit; the value is the name written to the log."""

    SEED_GERMINATED = "SEED_GERMINATED"
    SEED_STAGE_CHANGED = "SEED_STAGE_CHANGED"
    SEED_FOSSILIZED = "SEED_FOSSILIZED"
    SEED_CULLED = "SEED_CULLED"
    EPOCH_COMPLETED = "EPOCH_COMPLETED"
    PLATEAU_DETECTED = "PLATEAU_DETECTED"
    DEGRADATION_DETECTED = "DEGRADATION_DETECTED"
    IMPROVEMENT_DETECTED = "IMPROVEMENT_DETECTED"
    TAMIYO_INITIATED = "TAMIYO_INITIATED"
    ISOLATION_VIOLATION = "ISOLATION_VIOLATION"
    GRADIENT_ANOMALY = "GRADIENT_ANOMALY"
    PERFORMANCE_DEGRADATION = "PERFORMANCE_DEGRADATION"
    COMMAND_ISSUED = "COMMAND_ISSUED"
    COMMAND_EXECUTED = "COMMAND_EXECUTED"
    COMMAND_FAILED = "COMMAND_FAILED"
    PPO_UPDATE_COMPLETED = "PPO_UPDATE_COMPLETED"
    MEMORY_WARNING = "MEMORY_WARNING"
    REWARD_HACKING_SUSPECTED = "REWARD_HACKING_SUSPECTED"
    RATIO_EXPLOSION_DETECTED = "RATIO_EXPLOSION_DETECTED"
    RATIO_COLLAPSE_DETECTED = "RATIO_COLLAPSE_DETECTED"
    VALUE_COLLAPSE_DETECTED = "VALUE_COLLAPSE_DETECTED"
    GRADIENT_PATHOLOGY_DETECTED = "GRADIENT_PATHOLOGY_DETECTED"
    NUMERICAL_INSTABILITY_DETECTED = "NUMERICAL_INSTABILITY_DETECTED"


class Severity(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class TelemetryLevel(IntEnum):
    """How much the application reports; an anomaly escalates to DEBUG for a while.

    OFF emits nothing. MINIMAL emits what a user must not miss: PPO updates, anomalies,
    stabilization, progress and seed outcomes. NORMAL adds per-epoch and per-stage events
    and controller commands. DEBUG adds per-layer gradient statistics to PPO updates.
    """

    OFF = 0
    MINIMAL = 1
    NORMAL = 2
    DEBUG = 3


_NORMAL_ONLY = frozenset(
    {
        EventType.EPOCH_COMPLETED,
        EventType.SEED_STAGE_CHANGED,
        EventType.COMMAND_ISSUED,
        EventType.COMMAND_EXECUTED,
        EventType.COMMAND_FAILED,
    }
)


def minimum_level(event_type: EventType) -> TelemetryLevel:
    """The lowest telemetry level at which an event of this type is emitted."""
    return TelemetryLevel.NORMAL if event_type in _NORMAL_ONLY else TelemetryLevel.MINIMAL


# The order of the keys in a JSONL line; a contract with the legacy log.
RECORD_KEYS = (
    "event_id",
    "event_type",
    "timestamp",
    "seed_id",
    "slot_id",
    "epoch",
    "message",
    "data",
    "severity",
)


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "event_id": (str,),
    "message": (str,),
    "seed_id": (str, type(None)),
    "slot_id": (str, type(None)),
    "epoch": (int, type(None)),
}


def _check_types(record: dict[str, Any]) -> None:
    for key, types in _FIELD_TYPES.items():
        value = record[key]
        if not isinstance(value, types) or isinstance(value, bool):
            raise ValueError(f"{key} has the wrong type: {value!r}")


def _new_event_id() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TelemetryEvent:
    """One domain event, as written to the JSONL log and mapped to OpenTelemetry."""

    event_type: EventType
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    seed_id: str | None = None
    slot_id: str | None = None
    epoch: int | None = None
    severity: Severity = Severity.INFO
    event_id: str = field(default_factory=_new_event_id)
    timestamp: datetime = field(default_factory=_now)

    def to_record(self) -> dict[str, Any]:
        """The event as a dict whose keys follow RECORD_KEYS, values JSON-ready."""
        return {
            "event_id": self.event_id,
            "event_type": self.event_type.value,
            "timestamp": self.timestamp.isoformat(),
            "seed_id": self.seed_id,
            "slot_id": self.slot_id,
            "epoch": self.epoch,
            "message": self.message,
            "data": self.data,
            "severity": self.severity.value,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TelemetryEvent:
        """Rebuild an event from a parsed log line; raises ValueError naming a bad field."""
        missing = [key for key in RECORD_KEYS if key not in record]
        if missing:
            raise ValueError(f"missing keys: {', '.join(missing)}")
        try:
            event_type = EventType(record["event_type"])
        except ValueError:
            raise ValueError(f"unknown event_type {record['event_type']!r}") from None
        try:
            severity = Severity(record["severity"])
        except ValueError:
            raise ValueError(f"unknown severity {record['severity']!r}") from None
        try:
            timestamp = datetime.fromisoformat(record["timestamp"])
        except (TypeError, ValueError):
            raise ValueError(f"bad timestamp {record['timestamp']!r}") from None
        if timestamp.tzinfo is None:
            raise ValueError(f"timestamp without UTC offset {record['timestamp']!r}")
        if not isinstance(record["data"], dict):
            raise ValueError("data is not an object")
        _check_types(record)
        return cls(
            event_type=event_type,
            message=record["message"],
            data=record["data"],
            seed_id=record["seed_id"],
            slot_id=record["slot_id"],
            epoch=record["epoch"],
            severity=severity,
            event_id=record["event_id"],
            timestamp=timestamp,
        )
