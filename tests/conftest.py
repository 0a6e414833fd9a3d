"""Fixtures for every test directory: a recorder of the events emitted through telemetry,
the legacy event log that the original system wrote (tests/fixtures/), a driver that
steps a seed slot through its lifecycle (the slot, lifecycle and governor tests), and the
process state that in-process `esper` runs change."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import EventRecorder

from app import telemetry
from app.contracts.events import TelemetryLevel

if TYPE_CHECKING:  # the slot module loads torch, which most test directories do not need
    from app.contracts.stages import SeedStage
    from app.model.slot import SeedSlot


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


@pytest.fixture
def drive() -> Callable[[SeedSlot, SeedStage], None]:
    """Steps a slot with a germinated seed until it reaches `target`, reporting 80% val
    accuracy and a 78% counterfactual (a 2 pp contribution) whenever the seed contributes."""

    def step_until(slot: SeedSlot, target: SeedStage) -> None:
        for _ in range(100):
            if slot.stage == target:
                return
            slot.step_epoch(80.0, 78.0 if slot.contributes else None)
        raise AssertionError(f"slot never reached {target.name}; stuck in {slot.stage.name}")

    return step_until


@pytest.fixture
def in_process_run_state() -> Iterator[None]:
    """Puts back what an in-process `app.cli.main(["train", ...])` changes: torch's thread
    count, the telemetry handler and level."""
    import torch  # here, not at the top: most test directories do not need torch

    threads = torch.get_num_threads()
    handler = telemetry.event_handler()
    yield
    torch.set_num_threads(threads)
    telemetry.set_event_handler(handler)
    telemetry.set_level(TelemetryLevel.NORMAL)
