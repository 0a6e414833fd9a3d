"""The static controller: the host as it was built, the baseline growing must beat."""

from __future__ import annotations

from app.contracts.actions import Action
from app.contracts.seeds import SeedState
from app.contracts.signals import TrainingSignals


class StaticController:
    """Never grows a seed: every decision is WAIT. A run with it measures what the host
    reaches alone, under the same data, epochs and seeds as a run that grows."""

    def decide(self, signals: TrainingSignals, seed: SeedState, turn: int = 0) -> Action:
        return Action.WAIT
