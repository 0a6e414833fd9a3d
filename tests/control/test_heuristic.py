"""HeuristicController: the rule-based baseline (germinate, fossilize, cull, wait)."""

from __future__ import annotations

import itertools

import pytest

from app.contracts.actions import BLUEPRINTS, Action, action_mask, germinate_action
from app.contracts.seeds import SeedState
from app.contracts.signals import TrainingSignals
from app.contracts.stages import SeedStage
from app.control.heuristic import HeuristicConfig, HeuristicController

LIVE_NON_GATE_STAGES = (SeedStage.GERMINATED, SeedStage.TRAINING)
INACTIVE_STAGES = (SeedStage.FOSSILIZED, SeedStage.CULLED, SeedStage.EMBARGOED)


def signals(stabilized: bool = True, plateau_epochs: int = 5) -> TrainingSignals:
    return TrainingSignals(
        epoch=10,
        train_loss=0.5,
        train_accuracy=82.0,
        val_loss=0.6,
        val_accuracy=80.0,
        loss_delta=0.0,
        accuracy_delta=0.0,
        plateau_epochs=plateau_epochs,
        best_val_accuracy=80.0,
        best_val_loss=0.6,
        loss_history=(0.6,) * 5,
        accuracy_history=(80.0,) * 5,
        host_stabilized=stabilized,
    )


def seed(stage: SeedStage, counterfactual: float | None = None) -> SeedState:
    if stage == SeedStage.DORMANT:
        return SeedState()
    return SeedState(
        stage=stage,
        seed_id="seed-1",
        blueprint_id="conv_light",
        params=1000,
        last_counterfactual=counterfactual,
    )


# ---------------------------------------------------------------- germination


def test_waits_on_an_unstabilized_host_however_long_the_plateau() -> None:
    controller = HeuristicController()
    for plateau in range(20):
        decision = controller.decide(
            signals(stabilized=False, plateau_epochs=plateau), seed(SeedStage.DORMANT)
        )
        assert decision == Action.WAIT


@pytest.mark.parametrize("patience", [1, 3, 6])
def test_germinates_only_after_plateau_patience(patience: int) -> None:
    controller = HeuristicController(HeuristicConfig(plateau_patience=patience))
    dormant = seed(SeedStage.DORMANT)
    for plateau in range(patience):
        assert controller.decide(signals(plateau_epochs=plateau), dormant) == Action.WAIT
    decision = controller.decide(signals(plateau_epochs=patience), dormant)
    assert decision == germinate_action(BLUEPRINTS[0])
    assert decision.is_germinate


def test_default_patience_is_one_epoch() -> None:
    controller = HeuristicController()
    assert controller.decide(signals(plateau_epochs=0), seed(SeedStage.DORMANT)) == Action.WAIT
    assert controller.decide(signals(plateau_epochs=1), seed(SeedStage.DORMANT)).is_germinate


def test_germination_cycles_through_the_blueprints_by_turn() -> None:
    controller = HeuristicController()
    decisions = [controller.decide(signals(), seed(SeedStage.DORMANT), turn) for turn in range(12)]
    expected = [BLUEPRINTS[i % len(BLUEPRINTS)] for i in range(12)]
    assert [d.blueprint for d in decisions] == expected
    assert set(BLUEPRINTS) == {"conv_light", "conv_heavy", "depthwise", "attention", "norm"}


def test_a_decision_depends_on_its_environment_alone() -> None:
    controller = HeuristicController()
    dormant = seed(SeedStage.DORMANT)
    first = controller.decide(signals(), dormant, turn=2)
    for turn in range(5):
        controller.decide(signals(), dormant, turn)
    assert controller.decide(signals(), dormant, turn=2) == first


def test_custom_blueprints_are_cycled() -> None:
    controller = HeuristicController(HeuristicConfig(blueprints=("norm", "attention")))
    decisions = [controller.decide(signals(), seed(SeedStage.DORMANT), turn) for turn in range(5)]
    assert decisions == [
        Action.GERMINATE_NORM,
        Action.GERMINATE_ATTENTION,
        Action.GERMINATE_NORM,
        Action.GERMINATE_ATTENTION,
        Action.GERMINATE_NORM,
    ]


@pytest.mark.parametrize("stage", [s for s in SeedStage if s != SeedStage.DORMANT])
def test_never_germinates_into_an_occupied_or_unavailable_slot(stage: SeedStage) -> None:
    controller = HeuristicController()
    for counterfactual in (None, -5.0, 0.0, 5.0):
        decision = controller.decide(signals(plateau_epochs=50), seed(stage, counterfactual))
        assert not decision.is_germinate


# ---------------------------------------------------------------- probation gate


@pytest.mark.parametrize("counterfactual", [0.5, 0.51, 3.0, 40.0])
def test_fossilizes_a_contributing_seed_in_probation(counterfactual: float) -> None:
    controller = HeuristicController()
    decision = controller.decide(signals(), seed(SeedStage.PROBATIONARY, counterfactual))
    assert decision == Action.FOSSILIZE


@pytest.mark.parametrize("counterfactual", [None, 0.49, 0.0, -0.5, -10.0])
def test_culls_a_seed_in_probation_below_min_contribution(counterfactual: float | None) -> None:
    controller = HeuristicController()
    decision = controller.decide(signals(), seed(SeedStage.PROBATIONARY, counterfactual))
    assert decision == Action.CULL


def test_custom_min_contribution() -> None:
    controller = HeuristicController(HeuristicConfig(min_contribution=2.0))
    probation = SeedStage.PROBATIONARY
    assert controller.decide(signals(), seed(probation, 1.9)) == Action.CULL
    assert controller.decide(signals(), seed(probation, 2.0)) == Action.FOSSILIZE
    lenient = HeuristicController(HeuristicConfig(min_contribution=-1.0))
    assert lenient.decide(signals(), seed(probation, -0.5)) == Action.FOSSILIZE


def test_probation_decision_ignores_host_stabilization() -> None:
    controller = HeuristicController()
    unstable = signals(stabilized=False, plateau_epochs=0)
    assert controller.decide(unstable, seed(SeedStage.PROBATIONARY, 1.0)) == Action.FOSSILIZE
    assert controller.decide(unstable, seed(SeedStage.PROBATIONARY, 0.0)) == Action.CULL


# ---------------------------------------------------------------- culling a hurting seed


@pytest.mark.parametrize("stage", [SeedStage.BLENDING, SeedStage.SHADOWING])
@pytest.mark.parametrize("counterfactual", [-2.01, -3.0, -50.0])
def test_culls_a_hurting_seed_while_blending_or_shadowing(
    stage: SeedStage, counterfactual: float
) -> None:
    controller = HeuristicController()
    assert controller.decide(signals(), seed(stage, counterfactual)) == Action.CULL


@pytest.mark.parametrize("stage", [SeedStage.BLENDING, SeedStage.SHADOWING])
@pytest.mark.parametrize("counterfactual", [None, -2.0, -1.0, 0.0, 0.4, 5.0])
def test_waits_while_blending_or_shadowing_without_harm(
    stage: SeedStage, counterfactual: float | None
) -> None:
    controller = HeuristicController()
    assert controller.decide(signals(), seed(stage, counterfactual)) == Action.WAIT


def test_custom_cull_below() -> None:
    controller = HeuristicController(HeuristicConfig(cull_below=-0.5))
    assert controller.decide(signals(), seed(SeedStage.BLENDING, -0.6)) == Action.CULL
    assert controller.decide(signals(), seed(SeedStage.BLENDING, -0.4)) == Action.WAIT


# ---------------------------------------------------------------- waiting otherwise


@pytest.mark.parametrize("stage", LIVE_NON_GATE_STAGES + INACTIVE_STAGES)
@pytest.mark.parametrize("counterfactual", [None, -10.0, 0.0, 10.0])
def test_waits_in_every_other_stage(stage: SeedStage, counterfactual: float | None) -> None:
    controller = HeuristicController()
    for stabilized in (True, False):
        decision = controller.decide(signals(stabilized=stabilized), seed(stage, counterfactual))
        assert decision == Action.WAIT


# ---------------------------------------------------------------- masking


def test_every_decision_is_allowed_by_the_action_mask() -> None:
    counterfactuals = (None, -50.0, -2.5, -2.0, -0.5, 0.0, 0.49, 0.5, 2.0, 50.0)
    configs = (
        HeuristicConfig(),
        HeuristicConfig(plateau_patience=0, min_contribution=-5.0, cull_below=-0.1),
        HeuristicConfig(plateau_patience=3, blueprints=("attention",), min_contribution=3.0),
    )
    checked = 0
    for config in configs:
        controller = HeuristicController(config)
        for stage, stabilized, plateau, counterfactual in itertools.product(
            SeedStage, (False, True), range(5), counterfactuals
        ):
            decision = controller.decide(
                signals(stabilized=stabilized, plateau_epochs=plateau),
                seed(stage, counterfactual),
            )
            mask = action_mask(stage, stabilized)
            assert mask[decision], (config, stage.name, stabilized, plateau, decision.name)
            checked += 1
    assert checked == len(configs) * len(SeedStage) * 2 * 5 * len(counterfactuals)
