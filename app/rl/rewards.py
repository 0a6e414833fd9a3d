"""The controller's reward: accuracy gained, minus rent for the parameters a seed adds,
plus an optional shaping bonus for germinating.

Rewards are fractions of accuracy (0.01 per percentage point) so that returns stay near 1:
in percentage points the value loss dwarfs the policy loss, and gradient-norm clipping
over the whole network then scales the policy gradient to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.settings import check


@dataclass(frozen=True)
class RewardConfig:
    """`param_rent` is charged per epoch, in accuracy points, per host-size of seed params.

    A seed as large as the host costs `param_rent` pp each epoch it lives, so growth must
    pay for itself in accuracy.

    `germination_bonus` (pp) is a shaping reward for each germination the slot executes,
    to encourage exploration of growth. It is 0 by default because a controller can farm
    it, germinating and culling in a loop without gaining accuracy;
    REWARD_HACKING_SUSPECTED is raised when that happens.
    """

    param_rent: float = 0.2
    germination_bonus: float = 0.0

    def __post_init__(self) -> None:
        check(self, "germination_bonus", finite=True)
        check(self, "param_rent", finite=True, ge=0)


def step_reward(
    accuracy_before: float,
    accuracy_after: float,
    seed_params: int,
    host_params: int,
    config: RewardConfig,
    *,
    germinated: bool = False,
) -> float:
    """The reward of one controller step (accuracies in percent, reward a fraction);
    `germinated` says whether the step's action germinated a seed."""
    rent = config.param_rent * seed_params / host_params
    bonus = config.germination_bonus if germinated else 0.0
    return (accuracy_after - accuracy_before - rent + bonus) / 100.0
