"""The controller's observation: host signals, seed state and episode progress as floats."""

from __future__ import annotations

from app.contracts.actions import BLUEPRINTS
from app.contracts.seeds import SeedState
from app.contracts.signals import TrainingSignals
from app.contracts.stages import SeedStage

HISTORY = 5
OBS_DIM = 10 + len(SeedStage) + len(BLUEPRINTS) + 5 + HISTORY


def _clip(value: float, bound: float = 5.0) -> float:
    """Keep features in a range the policy network handles; NaN becomes the bound."""
    if value != value:
        return bound
    return max(-bound, min(bound, value))


def observation(
    signals: TrainingSignals, seed: SeedState, epoch: int, max_epochs: int
) -> list[float]:
    """A fixed-length vector of OBS_DIM floats, each scaled to roughly [-1, 1]."""
    history = [a / 100.0 for a in signals.accuracy_history[-HISTORY:]]
    history = [0.0] * (HISTORY - len(history)) + history
    stage = [1.0 if seed.stage == s else 0.0 for s in SeedStage]
    # What a live seed is worth depends most on what it is; without this the critic must
    # value a TRAINING seed of every blueprint alike, and WAIT beside it looks like rent.
    blueprint = [1.0 if seed.blueprint_id == b else 0.0 for b in BLUEPRINTS]
    return [
        epoch / max_epochs,
        signals.val_accuracy / 100.0,
        signals.train_accuracy / 100.0,
        _clip(signals.accuracy_delta / 10.0),
        _clip(signals.val_loss),
        _clip(signals.loss_delta),
        min(signals.plateau_epochs, 10) / 10.0,
        signals.best_val_accuracy / 100.0,
        float(signals.host_stabilized),
        (signals.val_accuracy - signals.best_val_accuracy) / 10.0,
        *stage,
        *blueprint,
        seed.alpha,
        min(seed.epochs_in_stage, 10) / 10.0,
        _clip(seed.counterfactual / 10.0),
        _clip(seed.improvement / 10.0),
        float(seed.seed_id is not None),
        *history,
    ]
