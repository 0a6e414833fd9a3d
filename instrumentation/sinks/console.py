"""Human-readable event lines on the terminal, printed above the progress bar."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TextIO

from tqdm import tqdm

from app.contracts.events import EventType, Severity, TelemetryEvent

_ALERT_SEVERITIES = frozenset({Severity.WARNING, Severity.ERROR, Severity.CRITICAL})

_PROGRESS_FIELDS = (
    ("batch", "batch"),
    ("smoothed_delta", "delta"),
    ("rolling_avg_accuracy", "acc_rolling"),
)

# What the compact mode shows of the events a user watches: a title, then
# (data key, label) pairs. Event types absent here are skipped unless they are alerts.
_COMPACT: Mapping[EventType, tuple[str, tuple[tuple[str, str], ...]]] = {
    EventType.PPO_UPDATE_COMPLETED: (
        "ppo update",
        (
            ("batch", "batch"),
            ("episodes_completed", "episodes"),
            ("avg_accuracy", "acc"),
            ("rolling_avg_accuracy", "acc_rolling"),
            ("avg_reward", "reward"),
            ("policy_loss", "policy_loss"),
            ("value_loss", "value_loss"),
            ("entropy", "entropy"),
            ("approx_kl", "kl"),
            ("clip_fraction", "clip"),
        ),
    ),
    EventType.TAMIYO_INITIATED: (
        "host stabilized",
        (("env_id", "env"), ("epoch", "epoch"), ("val_loss", "val_loss")),
    ),
    EventType.SEED_GERMINATED: (
        "seed germinated",
        (
            ("env_id", "env"),
            ("seed_id", "seed"),
            ("blueprint_id", "blueprint"),
            ("params", "params"),
        ),
    ),
    EventType.SEED_FOSSILIZED: (
        "seed fossilized",
        (
            ("env_id", "env"),
            ("seed_id", "seed"),
            ("blueprint_id", "blueprint"),
            ("improvement", "improvement"),
            ("params_added", "params_added"),
        ),
    ),
    EventType.SEED_CULLED: (
        "seed culled",
        (
            ("env_id", "env"),
            ("seed_id", "seed"),
            ("blueprint_id", "blueprint"),
            ("improvement", "improvement"),
            ("reason", "reason"),
        ),
    ),
    EventType.PLATEAU_DETECTED: ("plateau", _PROGRESS_FIELDS),
    EventType.IMPROVEMENT_DETECTED: ("improvement", _PROGRESS_FIELDS),
    EventType.DEGRADATION_DETECTED: ("degradation", _PROGRESS_FIELDS),
}


def format_value(value: object) -> str:
    """Floats to 4 significant digits, containers recursively, anything else via str."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}={format_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    return str(value)


def _fields(data: Mapping[str, Any], fields: tuple[tuple[str, str], ...]) -> str:
    return " ".join(f"{label}={format_value(data[key])}" for key, label in fields if key in data)


def _fields_of_all(data: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={format_value(value)}" for key, value in data.items())


def compact_line(event: TelemetryEvent) -> str | None:
    """One short line for an event a user watches; None for routine noise."""
    if event.severity in _ALERT_SEVERITIES:
        detail = event.data.get("detail") or event.message or _fields_of_all(event.data)
        return f"{event.severity.value.upper()} {event.event_type.value}: {detail}"
    if event.event_type in _COMPACT:
        title, fields = _COMPACT[event.event_type]
        return f"{title}: {_fields(event.data, fields)}"
    return None


def verbose_line(event: TelemetryEvent) -> str:
    """Every field of the event: time, severity, type, ids, message and all data."""
    parts = [
        event.timestamp.strftime("%H:%M:%S.%f")[:-3],
        event.severity.value,
        event.event_type.value,
    ]
    ids = {"seed": event.seed_id, "slot": event.slot_id, "epoch": event.epoch}
    parts.extend(f"{key}={value}" for key, value in ids.items() if value is not None)
    if event.message:
        parts.append(f'"{event.message}"')
    if event.data:
        parts.append(_fields_of_all(event.data))
    return " ".join(parts)


class ConsoleSink:
    """Prints events for the person watching the run, without breaking a tqdm bar.

    Compact mode shows PPO updates, alerts (severity warning or worse), stabilization,
    seed outcomes and progress changes; verbose mode shows every event in full.
    """

    name = "console"

    def __init__(self, verbose: bool = False, stream: TextIO | None = None) -> None:
        self._verbose = verbose
        self._stream = stream if stream is not None else sys.stderr

    def emit(self, event: TelemetryEvent) -> None:
        self.deliver(event, None)

    def capture(self, event: TelemetryEvent) -> None:
        """Nothing: a line depends on the event alone."""
        return None

    def deliver(self, event: TelemetryEvent, captured: object) -> None:
        line = verbose_line(event) if self._verbose else compact_line(event)
        if line is not None:
            tqdm.write(line, file=self._stream)

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        """Flush only: the stream belongs to the caller (usually stderr)."""
        self.flush()
