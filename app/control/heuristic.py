"""The rule-based controller (the heuristic Tamiyo), the baseline PPO is measured against."""

from __future__ import annotations

from dataclasses import dataclass

from app.contracts.actions import BLUEPRINTS, Action, germinate_action
from app.contracts.seeds import SeedState
from app.contracts.signals import TrainingSignals
from app.contracts.stages import SeedStage
from app.settings import check, require


@dataclass(frozen=True)
class HeuristicConfig:
    """Germinate after `plateau_patience` epochs without progress on a stabilized host,
    each environment cycling through `blueprints` from its own place; fossilize a seed
    whose counterfactual contribution reaches `min_contribution` pp, cull one that hurts
    by more than `cull_below` pp."""

    plateau_patience: int = 1
    blueprints: tuple[str, ...] = BLUEPRINTS
    min_contribution: float = 0.5
    cull_below: float = -2.0

    def __post_init__(self) -> None:
        known = bool(self.blueprints) and set(self.blueprints) <= set(BLUEPRINTS)
        require(self, "blueprints", known, f"one or more of {', '.join(BLUEPRINTS)}")
        check(self, "plateau_patience", ge=0)


class HeuristicController:
    """Decides one action per environment from the host signals and the seed state, and
    nothing else: an environment's decisions do not depend on the others'."""

    def __init__(self, config: HeuristicConfig | None = None) -> None:
        self.config = config or HeuristicConfig()

    def decide(self, signals: TrainingSignals, seed: SeedState, turn: int = 0) -> Action:
        """`turn` picks the blueprint to grow next: the environment's id plus the seeds it
        has grown, so that the environments of a batch start the cycle apart."""
        config = self.config
        if seed.stage == SeedStage.DORMANT:
            if signals.host_stabilized and signals.plateau_epochs >= config.plateau_patience:
                return germinate_action(config.blueprints[turn % len(config.blueprints)])
            return Action.WAIT
        if seed.stage == SeedStage.PROBATIONARY:
            if seed.counterfactual >= config.min_contribution:
                return Action.FOSSILIZE
            return Action.CULL
        measured = seed.last_counterfactual
        hurting = measured is not None and measured < config.cull_below
        if seed.stage in (SeedStage.BLENDING, SeedStage.SHADOWING) and hurting:
            return Action.CULL
        return Action.WAIT
