"""Fixtures for every test directory: a recorder of the events emitted through telemetry,
and the legacy event log that the original system wrote (tests/fixtures/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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


LEGACY_LOG = Path(__file__).parent / "fixtures" / "legacy-events-2025-12-06.jsonl"


@pytest.fixture(scope="session")
def legacy_log() -> Path:
    return LEGACY_LOG
