"""What a batch produces: each rank's episodes, and the batch's result."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.rl.buffer import RolloutBuffer
from app.rl.ppo_statistics import PPOUpdateMetrics
from app.rl.reward_hacking import StepOutcome


@dataclass(frozen=True)
class BatchResult:
    batch: int
    episodes_completed: int
    avg_accuracy: float
    avg_reward: float
    rolling_avg_accuracy: float
    metrics: PPOUpdateMetrics | None
    # How often each action was decided in the batch, every environment's steps together.
    actions: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Episodes:
    """What a rank's environments did in a batch, in env order: what rank 0 learns from."""

    accuracies: list[float]
    returns: list[float]
    buffer: RolloutBuffer | None
    steps: list[StepOutcome]
