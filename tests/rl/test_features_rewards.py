"""The controller's observation vector and its per-step reward."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest

from app.contracts.actions import BLUEPRINTS
from app.contracts.seeds import SeedState
from app.contracts.signals import TrainingSignals
from app.contracts.stages import SeedStage
from app.control.tracker import SignalTracker
from app.rl.features import HISTORY, OBS_DIM, observation
from app.rl.rewards import RewardConfig, step_reward

STAGES = list(SeedStage)
STAGE_OFFSET = 10  # host features come first, then the stage one-hot


def make_signals(**overrides: object) -> TrainingSignals:
    values: dict[str, object] = {
        "epoch": 4,
        "train_loss": 0.8,
        "train_accuracy": 71.0,
        "val_loss": 0.9,
        "val_accuracy": 68.0,
        "loss_delta": 0.05,
        "accuracy_delta": 1.5,
        "plateau_epochs": 2,
        "best_val_accuracy": 69.0,
        "best_val_loss": 0.85,
        "loss_history": (1.2, 1.0, 0.95, 0.9),
        "accuracy_history": (60.0, 64.0, 66.5, 68.0),
        "host_stabilized": True,
    }
    values.update(overrides)
    return TrainingSignals(**values)  # type: ignore[arg-type]


def make_seed(stage: SeedStage) -> SeedState:
    if stage == SeedStage.DORMANT:
        return SeedState()
    return SeedState(
        stage=stage,
        seed_id="env0-seed1",
        blueprint_id="conv_light",
        alpha=0.4,
        epochs_in_stage=2,
        epochs_total=7,
        params=4096,
        latest_accuracy=68.0,
        accuracy_at_germination=66.0,
        last_counterfactual=1.25,
    )


def all_finite(values: list[float]) -> bool:
    return all(isinstance(v, float | int) and math.isfinite(v) for v in values)


# ---------------------------------------------------------------- observation


@pytest.mark.parametrize("stage", STAGES, ids=[s.name for s in STAGES])
def test_observation_length_and_stage_one_hot(stage: SeedStage) -> None:
    obs = observation(make_signals(), make_seed(stage), epoch=4, max_epochs=20)
    assert len(obs) == OBS_DIM
    assert all_finite(obs)
    one_hot = obs[STAGE_OFFSET : STAGE_OFFSET + len(STAGES)]
    assert one_hot == [1.0 if s == stage else 0.0 for s in STAGES]


def test_the_stage_is_encoded_only_in_the_one_hot() -> None:
    # the same seed state in two stages: the vectors differ only in the stage one-hot
    base = make_seed(SeedStage.TRAINING)
    other = make_seed(SeedStage.SHADOWING)
    a = observation(make_signals(), base, 4, 20)
    b = observation(make_signals(), other, 4, 20)
    differing = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    index = STAGES.index
    offsets = [STAGE_OFFSET + index(SeedStage.TRAINING), STAGE_OFFSET + index(SeedStage.SHADOWING)]
    assert differing == offsets


@pytest.mark.parametrize("stage", STAGES, ids=[s.name for s in STAGES])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_observation_is_finite_with_non_finite_losses(stage: SeedStage, bad: float) -> None:
    signals = make_signals(
        train_loss=bad,
        val_loss=bad,
        loss_delta=bad,
        best_val_loss=bad,
        loss_history=(1.0, bad, bad),
    )
    obs = observation(signals, make_seed(stage), epoch=3, max_epochs=10)
    assert len(obs) == OBS_DIM
    assert all_finite(obs), obs


def test_observation_is_finite_after_a_nan_epoch_from_the_tracker() -> None:
    tracker = SignalTracker(env_id=0)
    tracker.update(1, 2.0, 40.0, 2.1, 38.0)
    signals = tracker.update(2, math.nan, 40.0, math.nan, 10.0)
    assert math.isnan(signals.loss_delta)
    for stage in STAGES:
        obs = observation(signals, make_seed(stage), epoch=2, max_epochs=10)
        assert len(obs) == OBS_DIM
        assert all_finite(obs), (stage, obs)


def test_observation_pads_short_accuracy_history() -> None:
    signals = make_signals(accuracy_history=(50.0,))
    obs = observation(signals, make_seed(SeedStage.DORMANT), epoch=0, max_epochs=10)
    assert obs[-HISTORY:] == [0.0, 0.0, 0.0, 0.0, 0.5]
    signals = make_signals(accuracy_history=(10.0, 20.0, 30.0, 40.0, 50.0, 60.0))
    obs = observation(signals, make_seed(SeedStage.DORMANT), epoch=0, max_epochs=10)
    assert obs[-HISTORY:] == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6])


def test_observation_reflects_the_host_and_the_seed() -> None:
    dormant = observation(make_signals(), make_seed(SeedStage.DORMANT), 5, 20)
    live = observation(make_signals(), make_seed(SeedStage.BLENDING), 5, 20)
    unstable = observation(make_signals(host_stabilized=False), make_seed(SeedStage.DORMANT), 5, 20)
    assert dormant[0] == pytest.approx(0.25)  # epoch progress
    assert dormant[1] == pytest.approx(0.68)  # val accuracy as a fraction
    assert dormant[8] == 1.0 and unstable[8] == 0.0  # host_stabilized
    assert dormant != live
    assert max(abs(v) for v in live) <= 5.0


def test_the_seed_blueprint_is_one_hot_after_the_stage() -> None:
    offset = STAGE_OFFSET + len(STAGES)
    dormant = observation(make_signals(), make_seed(SeedStage.DORMANT), 5, 20)
    assert dormant[offset : offset + len(BLUEPRINTS)] == [0.0] * len(BLUEPRINTS)
    for blueprint in BLUEPRINTS:
        seed = replace(make_seed(SeedStage.TRAINING), blueprint_id=blueprint)
        obs = observation(make_signals(), seed, 5, 20)
        assert obs[offset : offset + len(BLUEPRINTS)] == [float(b == blueprint) for b in BLUEPRINTS]


# ---------------------------------------------------------------- reward
#
# The reward is (contribution gained in pp - rent in pp) times a fixed unit (pp or a
# fraction of accuracy; the scale is the trainer's choice), so the tests measure the unit
# first. A contribution is what the slot adds to the host's accuracy: 0 without a seed.

HOST = 10_000


def unit(config: RewardConfig | None = None) -> float:
    """The reward of a 1 pp gain of contribution without rent."""
    return step_reward(0.0, 1.0, 0, HOST, config or RewardConfig())


def test_reward_unit_is_positive_and_fixed() -> None:
    assert unit() > 0
    assert step_reward(3.0, 4.0, 0, 77, RewardConfig()) == pytest.approx(unit())
    assert unit(RewardConfig(param_rent=3.0)) == pytest.approx(unit())


def test_reward_is_the_contribution_gained() -> None:
    config = RewardConfig()
    assert step_reward(0.0, 2.5, 0, HOST, config) == pytest.approx(2.5 * unit())
    assert step_reward(2.5, 0.0, 0, HOST, config) == pytest.approx(-2.5 * unit())
    assert step_reward(-1.0, 1.0, 0, HOST, config) == pytest.approx(2.0 * unit())
    assert step_reward(0.0, 0.0, 0, HOST, config) == 0.0


def test_an_episodes_rewards_sum_to_the_final_contribution_less_rent() -> None:
    config = RewardConfig(param_rent=0.2)
    seed = HOST // 4
    # before blending, blending, a dip, kept: the rewards telescope
    contributions = [0.0, 0.0, -1.5, 2.0, 4.0, 3.5]
    rewards = [
        step_reward(before, after, seed, HOST, config)
        for before, after in itertools.pairwise(contributions)
    ]
    rent = 0.2 * 0.25 * len(rewards)
    assert sum(rewards) == pytest.approx((3.5 - rent) * unit())


def test_germinating_and_culling_in_a_loop_earns_nothing_but_rent() -> None:
    config = RewardConfig(param_rent=0.2)
    seed = HOST // 2
    # germinate, blend to +1 pp, cull (back to 0), over and over
    contributions = [0.0, 0.0, 1.0, 0.0] * 5 + [0.0]
    rewards = [
        step_reward(before, after, seed, HOST, config)
        for before, after in itertools.pairwise(contributions)
    ]
    assert sum(rewards) == pytest.approx(-0.2 * 0.5 * len(rewards) * unit())
    assert sum(rewards) < 0


def test_reward_charges_rent_proportional_to_seed_over_host_params() -> None:
    config = RewardConfig(param_rent=0.2)
    u = unit(config)
    # a seed as large as the host costs param_rent pp per step
    assert step_reward(1.0, 1.0, HOST, HOST, config) == pytest.approx(-0.2 * u)
    assert step_reward(1.0, 2.0, 1_000, HOST, config) == pytest.approx((1.0 - 0.02) * u)
    rents = [-step_reward(1.0, 1.0, seed, HOST, config) / u for seed in (500, 1000, 2000)]
    assert rents == pytest.approx([0.01, 0.02, 0.04])
    # rent scales with the seed/host ratio, not the absolute sizes
    assert step_reward(1.0, 2.0, 50, 100, config) == pytest.approx(
        step_reward(1.0, 2.0, 5000, 10_000, config)
    )
    assert step_reward(1.0, 2.0, 50, 100, config) == pytest.approx(0.9 * u)


def test_reward_rent_scales_with_param_rent() -> None:
    u = unit()
    cheap = step_reward(0.0, 1.0, 2_000, 8_000, RewardConfig(param_rent=0.0))
    dear = step_reward(0.0, 1.0, 2_000, 8_000, RewardConfig(param_rent=2.0))
    assert cheap == pytest.approx(1.0 * u)
    assert dear == pytest.approx((1.0 - 2.0 * 0.25) * u)


def test_a_seed_must_pay_for_itself() -> None:
    config = RewardConfig(param_rent=0.2)
    # a seed half the host's size that adds nothing is penalized; one that adds more than
    # its rent (0.1 pp) is rewarded
    assert step_reward(1.0, 1.0, HOST // 2, HOST, config) < 0
    assert step_reward(1.0, 1.05, HOST // 2, HOST, config) < 0
    assert step_reward(1.0, 1.25, HOST // 2, HOST, config) > 0


def test_default_param_rent() -> None:
    assert RewardConfig().param_rent == 0.2


def test_germination_bonus_is_paid_only_for_a_germination() -> None:
    config = RewardConfig(param_rent=0.0, germination_bonus=3.0)
    u = unit(config)
    assert step_reward(0.0, 0.0, 0, HOST, config, germinated=True) == pytest.approx(3.0 * u)
    assert step_reward(0.0, 0.0, 0, HOST, config) == 0.0
    assert RewardConfig().germination_bonus == 0.0
