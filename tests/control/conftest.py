"""Fixtures for the tracker and heuristic tests: a collector of emitted domain events."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app import telemetry
from app.contracts.events import TelemetryEvent, TelemetryLevel


class _EventList:
    """An event handler that appends every emitted event to `events`."""

    def __init__(self) -> None:
        self.events: list[TelemetryEvent] = []

    def emit(self, event: TelemetryEvent) -> None:
        self.events.append(event)


@pytest.fixture
def events() -> Iterator[list[TelemetryEvent]]:
    """Every event emitted during the test, in order, at NORMAL level; the previously
    installed handler is put back afterwards and the level reset to NORMAL."""
    previous = telemetry.event_handler()
    handler = _EventList()
    telemetry.set_level(TelemetryLevel.NORMAL)
    telemetry.set_event_handler(handler)
    try:
        yield handler.events
    finally:
        telemetry.set_event_handler(previous)
        telemetry.set_level(TelemetryLevel.NORMAL)
