"""What a controller sees of the seed in a slot (the slot owns it; controllers read copies)."""

from __future__ import annotations

from dataclasses import dataclass

from app.contracts.stages import SeedStage


@dataclass
class SeedState:
    """The slot's view of its current seed; accuracies are percentages, deltas in pp.

    `latest_accuracy` is the last val accuracy the trainer reported, seed or not, so that a
    germination can record the accuracy it starts from.
    """

    stage: SeedStage = SeedStage.DORMANT
    seed_id: str | None = None
    blueprint_id: str | None = None
    alpha: float = 0.0
    epochs_in_stage: int = 0
    epochs_total: int = 0
    params: int = 0
    latest_accuracy: float = 0.0
    accuracy_at_germination: float = 0.0
    accuracy_at_blending_start: float | None = None
    last_counterfactual: float | None = None

    @property
    def improvement(self) -> float:
        return self.latest_accuracy - self.accuracy_at_germination

    @property
    def blending_delta(self) -> float:
        if self.accuracy_at_blending_start is None:
            return 0.0
        return self.latest_accuracy - self.accuracy_at_blending_start

    @property
    def counterfactual(self) -> float:
        """The last measured contribution; 0 before one is measured, when alpha was 0."""
        return 0.0 if self.last_counterfactual is None else self.last_counterfactual
