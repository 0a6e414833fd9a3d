"""Fixtures for the host, slot and governor tests: a lifecycle driver."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.contracts.stages import SeedStage
from app.model.slot import SeedSlot

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
