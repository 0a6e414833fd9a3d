"""The controller's reward: accuracy gained, minus rent for the parameters a seed adds.

Rewards are fractions of accuracy (0.01 per percentage point) so that returns stay near 1:
in percentage points the value loss dwarfs the policy loss, and gradient-norm clipping
over the whole network then scales the policy gradient to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RewardConfig:
    """`param_rent` is charged per epoch, in accuracy points, per host-size of seed params.

    A seed as large as the host costs `param_rent` pp each epoch it lives, so growth must
    pay for itself in accuracy.
    """

    param_rent: float = 0.2


def step_reward(
    accuracy_before: float,
    accuracy_after: float,
    seed_params: int,
    host_params: int,
    config: RewardConfig,
) -> float:
    """The reward of one controller step (accuracies in percent, reward a fraction)."""
    rent = config.param_rent * seed_params / host_params
    return (accuracy_after - accuracy_before - rent) / 100.0
