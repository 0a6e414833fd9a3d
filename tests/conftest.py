"""Fixtures for every test directory: a recorder of the events emitted through telemetry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import EventRecorder

from app import telemetry
from app.contracts.events import TelemetryLevel


@pytest.fixture
def events() -> Iterator[EventRecorder]:
    """Every event emitted during the test, in order, at NORMAL level (a test may change the
    level); the previously installed handler is put back and the level reset to NORMAL."""
    previous = telemetry.event_handler()
    recorder = EventRecorder()
    telemetry.set_level(TelemetryLevel.NORMAL)
    telemetry.set_event_handler(recorder)
    try:
        yield recorder
    finally:
        telemetry.set_event_handler(previous)
        telemetry.set_level(TelemetryLevel.NORMAL)
