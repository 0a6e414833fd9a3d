"""The one function domain code emits events through, and the level that filters them.

Like the OpenTelemetry API, this is a thin front: it does nothing until the
instrumentation layer installs a handler (the telemetry hub) with `set_event_handler`.
"""

from __future__ import annotations

from typing import Protocol

from app.contracts.events import TelemetryEvent, TelemetryLevel, minimum_level


class EventHandler(Protocol):
    def emit(self, event: TelemetryEvent) -> None: ...


_handler: EventHandler | None = None
_level = TelemetryLevel.NORMAL


def set_event_handler(handler: EventHandler | None) -> None:
    global _handler
    _handler = handler


def event_handler() -> EventHandler | None:
    """The installed handler, so that a scoped installation can put the previous one back."""
    return _handler


def set_level(level: TelemetryLevel) -> None:
    global _level
    _level = level


def emit(event: TelemetryEvent) -> None:
    """Hand an event to the installed handler if the current level admits its type."""
    if _handler is not None and _level >= minimum_level(event.event_type):
        _handler.emit(event)
