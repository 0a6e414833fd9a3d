"""Controller actions on a seed slot and the blueprints a seed can be grown from."""

from __future__ import annotations

from enum import IntEnum

from app.contracts.stages import CONTRIBUTING_STAGES, CULLABLE_STAGES, SeedStage

# The live stages in which a seed's contribution to the host has been measured.
JUDGED_STAGES = CONTRIBUTING_STAGES & CULLABLE_STAGES

BLUEPRINTS: tuple[str, ...] = ("conv_light", "conv_heavy", "depthwise", "attention", "norm")


class Action(IntEnum):
    """The discrete action space of the controller; the value is the policy's logit index."""

    WAIT = 0
    GERMINATE_CONV_LIGHT = 1
    GERMINATE_CONV_HEAVY = 2
    GERMINATE_DEPTHWISE = 3
    GERMINATE_ATTENTION = 4
    GERMINATE_NORM = 5
    FOSSILIZE = 6
    CULL = 7

    @property
    def blueprint(self) -> str | None:
        """The blueprint a GERMINATE action grows, None for the others."""
        if self.name.startswith("GERMINATE_"):
            return self.name.removeprefix("GERMINATE_").lower()
        return None

    @property
    def is_germinate(self) -> bool:
        return self.blueprint is not None


NUM_ACTIONS = len(Action)


def germinate_action(blueprint: str) -> Action:
    return Action[f"GERMINATE_{blueprint.upper()}"]


def action_mask(stage: SeedStage, host_stabilized: bool) -> list[bool]:
    """Which actions are valid for a slot in `stage`; WAIT always is.

    Germination needs an empty slot on a stabilized host; FOSSILIZE is offered only in
    PROBATIONARY, where the fossilization gate decides; CULL needs a live seed that has
    been measured, from BLENDING on: a seed in TRAINING has not yet touched the host's
    output, so there is nothing to judge it by.
    """
    mask = [False] * NUM_ACTIONS
    mask[Action.WAIT] = True
    if stage == SeedStage.DORMANT and host_stabilized:
        for action in Action:
            if action.is_germinate:
                mask[action] = True
    if stage == SeedStage.PROBATIONARY:
        mask[Action.FOSSILIZE] = True
    if stage in JUDGED_STAGES:
        mask[Action.CULL] = True
    return mask
