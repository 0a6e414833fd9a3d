"""Fixtures for the host, slot and governor tests: an event collector, a lifecycle driver."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from app import telemetry
from app.contracts.events import TelemetryEvent, TelemetryLevel
from app.contracts.stages import SeedStage
from app.model.slot import SeedSlot


class _EventList:
    """An event handler that appends every emitted event to `events`."""

    def __init__(self) -> None:
        self.events: list[TelemetryEvent] = []

    def emit(self, event: TelemetryEvent) -> None:
        self.events.append(event)


@pytest.fixture
def events() -> Iterator[list[TelemetryEvent]]:
    """Every event emitted during the test, in order, at NORMAL level."""
    previous_level = telemetry.current_level()
    handler = _EventList()
    telemetry.set_level(TelemetryLevel.NORMAL)
    telemetry.set_event_handler(handler)
    yield handler.events
    telemetry.set_event_handler(None)
    telemetry.set_level(previous_level)


Driver = Callable[[SeedSlot, SeedStage], None]


@pytest.fixture
def drive() -> Driver:
    """Steps a slot with a germinated seed until it reaches `target`, reporting 80% val
    accuracy and a 78% counterfactual (a 2 pp contribution) whenever the seed contributes."""

    def step_until(slot: SeedSlot, target: SeedStage) -> None:
        for _ in range(100):
            if slot.stage == target:
                return
            slot.step_epoch(80.0, 78.0 if slot.contributes else None)
        raise AssertionError(f"slot never reached {target.name}; stuck in {slot.stage.name}")

    return step_until
