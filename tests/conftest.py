"""Fixtures for every test directory: a recorder of the events emitted through telemetry,
and the legacy event log that the original system wrote (shared/fixtures/)."""

from __future__ import annotations

import os
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


LEGACY_LOG_NAME = "legacy-events-2025-12-06.jsonl"


def _shared_dir() -> Path:
    configured = os.environ.get("ESPER_SHARED_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def legacy_log() -> Path:
    path = _shared_dir() / "fixtures" / LEGACY_LOG_NAME
    if not path.is_file():
        pytest.fail(
            f"legacy event log not found at {path}: the repository's parent must hold "
            "shared/fixtures/, or set ESPER_SHARED_DIR to the shared directory"
        )
    return path
