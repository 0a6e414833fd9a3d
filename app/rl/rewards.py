"""The controller's reward: the seed's measured contribution gained, minus rent for the
parameters it adds, plus an optional shaping bonus for germinating.

The contribution is the seed's counterfactual: the host's validation accuracy with the
seed minus without it, measured in the same epoch on the same weights, so the host's own
epoch-to-epoch noise cancels out of it. The host's accuracy gain would carry that noise,
several points from one epoch to the next on a small validation set, and would bury the few
points a seed is worth. A seed counts as contributing nothing until it blends and again once
it is culled, so a step's reward is the change of what the slot adds to the host: over an
episode the rewards sum to what the seed adds at the end, less its rent. Germinating and
culling in a loop therefore sums to nothing but rent.

Rewards are fractions of accuracy (0.01 per percentage point) so that returns stay near 1:
in percentage points the value loss dwarfs the policy loss, and gradient-norm clipping
over the whole network then scales the policy gradient to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.settings import check

# The reward of one percentage point of accuracy.
REWARD_PER_POINT = 0.01


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
    contribution_before: float,
    contribution_after: float,
    seed_params: int,
    host_params: int,
    config: RewardConfig,
    *,
    germinated: bool = False,
) -> float:
    """The reward of one controller step, a fraction; the contributions (pp) are what the
    slot added to the host's accuracy before the step and after the epoch that followed
    it, and `germinated` says whether the step's action germinated a seed."""
    rent = config.param_rent * seed_params / host_params
    bonus = config.germination_bonus if germinated else 0.0
    return (contribution_after - contribution_before - rent + bonus) * REWARD_PER_POINT
