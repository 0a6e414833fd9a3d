"""The vectorized training loop driven directly: the events it emits (docs/events.md), batching,
governor rollbacks, telemetry escalation, determinism and checkpoints."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from statistics import fmean
from typing import Any

import pytest
import torch
from helpers import ANOMALY_FIELDS, PPO_FIELDS, SEED_OUTCOME_FIELDS, EventRecorder, train_alone

from app.contracts.actions import BLUEPRINTS, Action
from app.contracts.events import EventType, Severity, TelemetryEvent, TelemetryLevel
from app.contracts.stages import SeedStage
from app.model.host import SLOT_ID
from app.model.stacked_seeds import StackedSeeds
from app.rl.anomaly import Anomaly, AnomalyThresholds
from app.rl.ppo_statistics import LAYER_STAT_NAMES
from app.training.batch_parts import BatchResult
from app.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from app.training.commands import run_command
from app.training.config import RunConfig
from app.training.datasets import Dataset
from app.training.environment import EpochResult, HostConfig, HostEnvironment
from app.training.environment_batch import EnvironmentBatch, Scope
from app.training.vectorized import VectorizedTrainer

MakeConfig = Callable[..., RunConfig]

STAGE_NAMES = {stage.name for stage in SeedStage}


def run_all(trainer: VectorizedTrainer) -> list[BatchResult]:
    results = []
    while not trainer.finished:
        results.append(trainer.run_batch())
    return results


def batches_of(events: list[TelemetryEvent]) -> list[list[TelemetryEvent]]:
    """The stream cut after each PPO update: the events of each batch, update last."""
    batches: list[list[TelemetryEvent]] = [[]]
    for event in events:
        batches[-1].append(event)
        if event.event_type == EventType.PPO_UPDATE_COMPLETED:
            batches.append([])
    return [batch for batch in batches if batch]


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def finite(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


def comparable(events: list[TelemetryEvent]) -> list[tuple[Any, ...]]:
    """What must repeat in a rerun: everything but ids, timestamps and durations."""
    return [
        (
            event.event_type,
            event.epoch,
            event.seed_id,
            event.slot_id,
            event.message,
            event.severity,
            # json keeps NaN == NaN comparable and shows a readable diff on failure.
            json.dumps({k: v for k, v in event.data.items() if k != "duration_s"}, sort_keys=True),
        )
        for event in events
    ]


# --- PPO updates and epochs ---------------------------------------------------------------


@pytest.mark.parametrize("recurrent", [False, True], ids=["feedforward", "recurrent"])
def test_ppo_update_events_carry_every_contract_field(
    events: EventRecorder, make_config: MakeConfig, synthetic: Dataset, recurrent: bool
) -> None:
    config = make_config(recurrent=recurrent)
    trainer = VectorizedTrainer(config, synthetic)
    results = run_all(trainer)

    updates = events.of_type(EventType.PPO_UPDATE_COMPLETED)
    assert len(results) == len(updates) == config.batches == 2
    accuracies_so_far: list[float] = []
    for number, (update, result, batch_events) in enumerate(
        zip(updates, results, batches_of(events), strict=True), start=1
    ):
        data = update.data
        missing = [name for name in PPO_FIELDS if name not in data]
        assert not missing, f"PPO_UPDATE_COMPLETED lacks {missing}"
        assert update.severity == Severity.INFO
        assert data["batch"] == result.batch == number
        assert data["episodes_completed"] == result.episodes_completed == number * config.envs
        assert data["train_steps"] == number
        for name in ("policy_loss", "value_loss", "entropy", "approx_kl", "ratio_std"):
            assert finite(data[name]), f"{name}={data[name]!r}"
        assert data["value_loss"] >= 0
        assert 0 <= data["entropy"] <= math.log(8) + 1e-6
        ppo = config.ppo
        annealed = (number - 1) / ppo.ent_anneal_updates
        expected_coef = ppo.ent_coef + annealed * (ppo.ent_coef_final - ppo.ent_coef)
        assert data["entropy_coef"] == pytest.approx(expected_coef)
        assert 0.0 <= data["clip_fraction"] <= 1.0
        assert 0.0 < data["ratio_min"] <= data["ratio_mean"] <= data["ratio_max"]
        assert data["ratio_std"] >= 0
        assert data["explained_variance"] <= 1.0 or math.isnan(data["explained_variance"])
        stop = data["early_stop_epoch"]
        assert stop is None or 1 <= stop < config.ppo.update_epochs
        assert data["has_nan"] is False and data["has_inf"] is False
        # The batch accuracy is the mean final-epoch validation accuracy of its episodes.
        finals = [
            event.data["val_accuracy"]
            for event in batch_events
            if event.event_type == EventType.EPOCH_COMPLETED and event.epoch == config.max_epochs
        ]
        assert len(finals) == config.envs
        assert data["avg_accuracy"] == pytest.approx(fmean(finals))
        assert 0.0 <= data["avg_accuracy"] <= 100.0
        accuracies_so_far.append(data["avg_accuracy"])
        assert data["rolling_avg_accuracy"] == pytest.approx(fmean(accuracies_so_far))
        assert finite(data["avg_reward"])
        assert data["avg_reward"] == pytest.approx(result.avg_reward)
        assert result.metrics is not None and result.metrics.train_steps == number
    # NORMAL telemetry and nothing escalated yet: no per-layer statistics on the first update.
    assert "layer_grad_stats" not in updates[0].data


def test_epoch_completed_once_per_env_per_epoch(
    events: EventRecorder, make_config: MakeConfig, synthetic: Dataset
) -> None:
    config = make_config(controller="heuristic", episodes=2, max_epochs=4)
    run_all(VectorizedTrainer(config, synthetic))

    epochs = events.of_type(EventType.EPOCH_COMPLETED)
    seen = [(event.data["env_id"], event.epoch) for event in epochs]
    expected = [(env, epoch) for epoch in range(1, 5) for env in range(config.envs)]
    assert seen == expected
    for event in epochs:
        data = event.data
        assert event.slot_id == SLOT_ID
        assert data["seed_stage"] in STAGE_NAMES
        assert finite(data["val_loss"]) and finite(data["train_loss"])
        assert 0.0 <= data["val_accuracy"] <= 100.0
        assert data["rolled_back"] is False
        assert data["duration_s"] > 0


def test_uneven_episodes_run_only_the_remainder_in_the_last_batch(
    events: EventRecorder, make_config: MakeConfig, synthetic: Dataset
) -> None:
    config = make_config(envs=2, episodes=3, max_epochs=3)
    trainer = VectorizedTrainer(config, synthetic)
    results = run_all(trainer)

    assert [r.episodes_completed for r in results] == [2, 3]
    assert trainer.progress.episodes_completed == config.episodes
    assert trainer.progress.batches_completed == config.batches == 2
    first, last = batches_of(events)
    envs_in = [
        sorted({e.data["env_id"] for e in batch if e.event_type == EventType.EPOCH_COMPLETED})
        for batch in (first, last)
    ]
    assert envs_in == [[0, 1], [0]]
    assert last[-1].event_type == EventType.PPO_UPDATE_COMPLETED
    assert last[-1].data["episodes_completed"] == 3
    assert last[-1].data["batch"] == 2


# --- seed lifecycle -------------------------------------------------------------------------


def test_static_run_is_the_host_alone_under_the_same_data(
    events: EventRecorder, make_config: MakeConfig, synthetic: Dataset
) -> None:
    """The static controller never acts, and its hosts train exactly as the hosts of a
    run that grows seeds do until that run's first germination."""
    config = make_config(controller="static", episodes=2, max_epochs=9)
    results = run_all(VectorizedTrainer(config, synthetic))
    static = list(events)
    events.clear()
    run_all(VectorizedTrainer(replace(config, controller="heuristic"), synthetic))
    heuristic = list(events)

    assert [r.metrics for r in results] == [None]
    # The reward is what a seed adds: the host's own accuracy gains earn nothing.
    assert [r.avg_reward for r in results] == [0.0]
    kinds = {e.event_type for e in static}
    assert EventType.EPOCH_COMPLETED in kinds
    assert kinds <= {EventType.EPOCH_COMPLETED, EventType.TAMIYO_INITIATED}
    assert {e.data["seed_stage"] for e in static if e.event_type == EventType.EPOCH_COMPLETED} == {
        "DORMANT"
    }

    def accuracies(stream: list[TelemetryEvent], before: int) -> list[float]:
        return [
            e.data["val_accuracy"]
            for e in stream
            if e.event_type == EventType.EPOCH_COMPLETED
            and e.epoch is not None
            and e.epoch <= before
        ]

    first_growth = min(e.epoch for e in heuristic if e.event_type == EventType.SEED_GERMINATED)
    assert accuracies(static, first_growth) == accuracies(heuristic, first_growth)


def test_heuristic_run_germinates_and_stages_seeds_without_ppo_updates(
    events: EventRecorder, make_config: MakeConfig, synthetic: Dataset
) -> None:
    config = make_config(controller="heuristic", episodes=2, max_epochs=9)
    trainer = VectorizedTrainer(config, synthetic)
    results = run_all(trainer)

    assert trainer.agent is None
    assert [r.metrics for r in results] == [None]
    assert events.of_type(EventType.PPO_UPDATE_COMPLETED) == []
    germinated = events.of_type(EventType.SEED_GERMINATED)
    changes = events.of_type(EventType.SEED_STAGE_CHANGED)
    assert germinated, "the heuristic never germinated a seed within 9 epochs"
    assert {c.data["to"] for c in changes} >= {"TRAINING", "BLENDING", "SHADOWING"}

    stabilized_at = {e.data["env_id"]: e.epoch for e in events.of_type(EventType.TAMIYO_INITIATED)}
    for event in germinated:
        data = event.data
        assert {"blueprint_id", "seed_id", "params", "env_id"} <= data.keys()
        assert data["blueprint_id"] in BLUEPRINTS
        assert data["seed_id"] == event.seed_id
        assert data["seed_id"].startswith(f"env{data['env_id']}_seed_")
        assert isinstance(data["params"], int) and data["params"] > 0
        assert event.slot_id == SLOT_ID
        # Germination needs a stabilized host.
        assert data["env_id"] in stabilized_at and event.epoch >= stabilized_at[data["env_id"]]
    for event in changes:
        assert {"from", "to", "env_id"} <= event.data.keys()
        assert event.data["from"] in STAGE_NAMES and event.data["to"] in STAGE_NAMES
        assert event.data["from"] != event.data["to"]
    for event in events.of_type(EventType.SEED_CULLED) + events.of_type(EventType.SEED_FOSSILIZED):
        assert set(SEED_OUTCOME_FIELDS) <= event.data.keys()

    # Per env, the stage changes chain, and every EPOCH_COMPLETED reports the stage the
    # last change (in stream order) left the slot in.
    stage = dict.fromkeys(range(config.envs), "DORMANT")
    for event in events:
        if event.event_type == EventType.SEED_STAGE_CHANGED:
            env_id = event.data["env_id"]
            assert event.data["from"] == stage[env_id], f"broken chain at {event.message}"
            stage[env_id] = event.data["to"]
        elif event.event_type == EventType.SEED_GERMINATED:
            assert stage[event.data["env_id"]] == "DORMANT"
            stage[event.data["env_id"]] = "GERMINATED"
        elif event.event_type == EventType.EPOCH_COMPLETED:
            assert event.data["seed_stage"] == stage[event.data["env_id"]]


def _stabilized_env(
    config: RunConfig, synthetic: Dataset, env_id: int = 0
) -> tuple[HostEnvironment, Callable[[int], EpochResult], int]:
    """An environment trained alone until its host stabilized, the function that trains
    its next epoch, and the epoch it stabilized in."""
    env = HostEnvironment(
        env_id,
        synthetic,
        HostConfig(),
        config.slot,
        config.tracker,
        seed=env_id,
        device=torch.device("cpu"),
    )
    run_epoch = train_alone(env)
    for epoch in range(1, 20):
        if run_epoch(epoch).signals.host_stabilized:
            return env, run_epoch, epoch
    raise AssertionError("host never stabilized within 19 epochs")


def _step_until(
    env: HostEnvironment, run_epoch: Callable[[int], EpochResult], epoch: int, stage: SeedStage
) -> int:
    for _ in range(20):
        if env.slot.stage == stage:
            return epoch
        epoch += 1
        run_epoch(epoch)
    raise AssertionError(f"slot never reached {stage.name}; stuck in {env.slot.stage.name}")


def test_fossilized_seed_reports_contract_fields(
    events: EventRecorder, fast_config: RunConfig, synthetic: Dataset
) -> None:
    env, run_epoch, epoch = _stabilized_env(fast_config, synthetic)
    assert env.apply(Action.GERMINATE_CONV_HEAVY)
    epoch = _step_until(env, run_epoch, epoch, SeedStage.PROBATIONARY)
    assert env.apply(Action.FOSSILIZE), f"counterfactual {env.slot.state.counterfactual}"

    (germinated,) = events.of_type(EventType.SEED_GERMINATED)
    path = [(e.data["from"], e.data["to"]) for e in events.of_type(EventType.SEED_STAGE_CHANGED)]
    assert path == [
        ("GERMINATED", "TRAINING"),
        ("TRAINING", "BLENDING"),
        ("BLENDING", "SHADOWING"),
        ("SHADOWING", "PROBATIONARY"),
        ("PROBATIONARY", "FOSSILIZED"),
    ]
    (fossilized,) = events.of_type(EventType.SEED_FOSSILIZED)
    data = fossilized.data
    assert set(SEED_OUTCOME_FIELDS) | {"params_added"} <= data.keys()
    assert data["blueprint_id"] == "conv_heavy"
    assert data["seed_id"] == fossilized.seed_id == germinated.data["seed_id"] == "env0_seed_0"
    assert data["env_id"] == 0
    assert data["params_added"] == germinated.data["params"] > 0
    slot = fast_config.slot
    assert data["epochs_total"] == (
        slot.training_epochs + slot.blending_epochs + slot.shadowing_epochs
    )
    assert data["counterfactual"] >= slot.min_fossilize_improvement
    assert finite(data["improvement"]) and finite(data["blending_delta"])
    assert fossilized.epoch == epoch and fossilized.slot_id == SLOT_ID
    # A fossilized seed stays: later epochs keep it and emit no more lifecycle events.
    events.clear()
    run_epoch(epoch + 1)
    assert [e.event_type for e in events] == [EventType.EPOCH_COMPLETED]
    assert events[0].data["seed_stage"] == "FOSSILIZED"


def test_culled_seeds_report_contract_fields_and_reason(
    events: EventRecorder, fast_config: RunConfig, synthetic: Dataset
) -> None:
    env, run_epoch, epoch = _stabilized_env(fast_config, synthetic, env_id=1)
    assert env.apply(Action.GERMINATE_CONV_LIGHT)
    epoch = _step_until(env, run_epoch, epoch, SeedStage.BLENDING)
    assert env.apply(Action.CULL)
    epoch = _step_until(env, run_epoch, epoch, SeedStage.DORMANT)  # through the embargo
    assert env.apply(Action.GERMINATE_NORM)
    epoch = _step_until(env, run_epoch, epoch, SeedStage.PROBATIONARY)
    _step_until(env, run_epoch, epoch, SeedStage.EMBARGOED)  # probation runs out without a decision

    by_controller, by_timeout = events.of_type(EventType.SEED_CULLED)
    assert by_controller.data["reason"] == "controller"
    assert by_timeout.data["reason"] == "probation_timeout"
    for event, seed_id, blueprint in (
        (by_controller, "env1_seed_0", "conv_light"),
        (by_timeout, "env1_seed_1", "norm"),
    ):
        assert set(SEED_OUTCOME_FIELDS) | {"reason"} <= event.data.keys()
        assert event.data["seed_id"] == event.seed_id == seed_id
        assert event.data["blueprint_id"] == blueprint
        assert event.data["env_id"] == 1
        for name in ("improvement", "blending_delta", "counterfactual"):
            assert finite(event.data[name]), name
    assert by_controller.data["epochs_in_stage"] == 0  # culled right after entering BLENDING
    assert by_controller.data["epochs_total"] == fast_config.slot.training_epochs
    assert by_timeout.data["epochs_in_stage"] == fast_config.slot.probation_max_epochs


# --- governor -------------------------------------------------------------------------------


def _run_with_rollback(
    make_config: MakeConfig, synthetic: Dataset, monkeypatch: pytest.MonkeyPatch
) -> tuple[RunConfig, HostEnvironment, str]:
    """A heuristic run (seed 2: env 0 grows a seed within 7 epochs) whose env 0 host
    weights turn NaN in the first epoch that trains a live seed; returns the config,
    env 0 and the id of that seed."""
    config = make_config(controller="heuristic", episodes=2, max_epochs=7, seed=2)
    trainer = VectorizedTrainer(config, synthetic)
    env = trainer.envs[0]
    original = EnvironmentBatch._train_epoch
    corrupted: list[str] = []

    def train_then_corrupt(
        batch: EnvironmentBatch, seeds: StackedSeeds, scope: Scope
    ) -> tuple[list[float], ...]:
        result = original(batch, seeds, scope)
        if env.slot.is_active and not corrupted:
            corrupted.append(str(env.slot.seed_id))
            with torch.no_grad():
                env.host.host_parameters()[0].fill_(math.nan)
        return result

    monkeypatch.setattr(EnvironmentBatch, "_train_epoch", train_then_corrupt)
    run_all(trainer)
    assert corrupted, "env 0 never had a live seed to roll back"
    return config, env, corrupted[0]


def test_governor_rollback_inside_the_loop_culls_the_seed_and_restores_weights(
    events: EventRecorder,
    make_config: MakeConfig,
    synthetic: Dataset,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config, env, seed_id = _run_with_rollback(make_config, synthetic, monkeypatch)

    culls = [e for e in events.of_type(EventType.SEED_CULLED) if e.data["env_id"] == 0]
    rollback = [e for e in culls if e.data["reason"] == "governor_rollback"]
    assert len(rollback) == 1
    assert rollback[0].data["seed_id"] == rollback[0].seed_id == seed_id
    assert set(SEED_OUTCOME_FIELDS) <= rollback[0].data.keys()
    env0_epochs = [e for e in events.of_type(EventType.EPOCH_COMPLETED) if e.data["env_id"] == 0]
    rolled = [e for e in env0_epochs if e.data["rolled_back"]]
    assert len(rolled) == 1
    assert rolled[0].data["seed_stage"] == "CULLED"
    # The cull is reported inside the epoch that rolled back, before its EPOCH_COMPLETED.
    assert events.index(rolled[0]) > events.index(rollback[0])
    # The restored host validates to a finite loss at once and trains on healthily.
    assert all(finite(e.data["val_loss"]) for e in env0_epochs)
    assert all(torch.isfinite(p).all() for p in env.host.parameters())
    assert env0_epochs[-1].epoch == config.max_epochs
    assert env0_epochs[-1].data["val_accuracy"] > 0


def test_rollback_cull_event_carries_the_epoch_it_happened_in(
    events: EventRecorder,
    make_config: MakeConfig,
    synthetic: Dataset,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _run_with_rollback(make_config, synthetic, monkeypatch)
    (cull,) = [
        e for e in events.of_type(EventType.SEED_CULLED) if e.data["reason"] == "governor_rollback"
    ]
    (rolled,) = [e for e in events.of_type(EventType.EPOCH_COMPLETED) if e.data["rolled_back"]]
    assert cull.epoch == rolled.epoch


# --- telemetry level and escalation ---------------------------------------------------------


def _assert_layer_stats(data: dict[str, Any], trainer: VectorizedTrainer) -> None:
    assert trainer.agent is not None
    stats = data["layer_grad_stats"]
    names = [name for name, _ in trainer.agent.network.named_parameters()]
    assert list(stats) == names
    for row in stats.values():
        assert tuple(row) == LAYER_STAT_NAMES
        assert all(finite(value) for value in row.values())
        assert row["norm"] >= 0 and row["std"] >= 0 and row["max_abs"] >= 0


def test_debug_level_adds_layer_grad_stats(
    events: EventRecorder, make_config: MakeConfig, synthetic: Dataset
) -> None:
    config = make_config(telemetry_level=TelemetryLevel.DEBUG, episodes=2, max_epochs=3)
    trainer = VectorizedTrainer(config, synthetic)
    run_all(trainer)
    (update,) = events.of_type(EventType.PPO_UPDATE_COMPLETED)
    _assert_layer_stats(update.data, trainer)


def test_anomaly_is_emitted_before_its_update_and_escalates_the_next_ones(
    events: EventRecorder, make_config: MakeConfig, synthetic: Dataset
) -> None:
    # explained_variance never reaches 2.0: every update is a value collapse. Episodes long
    # enough to grow seeds, so that the returns vary and explained variance is defined.
    thresholds = AnomalyThresholds(value_collapse=2.0, value_warmup_updates=0, escalation_updates=1)
    config = make_config(anomaly=thresholds, episodes=6)
    trainer = VectorizedTrainer(config, synthetic)
    run_all(trainer)

    batches = batches_of(events)
    assert len(batches) == 3
    for number, batch in enumerate(batches, start=1):
        update = batch[-1]
        assert update.event_type == EventType.PPO_UPDATE_COMPLETED
        collapses = [e for e in batch if e.event_type == EventType.VALUE_COLLAPSE_DETECTED]
        assert len(collapses) == 1, f"batch {number}"
        anomaly = collapses[0]
        # Right before its update, after every epoch of the batch.
        assert batch.index(anomaly) > max(
            i for i, e in enumerate(batch) if e.event_type == EventType.EPOCH_COMPLETED
        )
        assert anomaly.severity == Severity.WARNING
        assert set(ANOMALY_FIELDS) <= anomaly.data.keys()
        assert anomaly.data["anomaly_type"] == "value_collapse"
        assert "explained_variance" in anomaly.data["detail"]
        for name in ("train_steps", "ratio_max", "ratio_min", "approx_kl", "clip_fraction"):
            assert anomaly.data[name] == update.data[name], name
        assert anomaly.data["explained_variance"] == update.data["explained_variance"]
        # The first update ran at NORMAL; each anomaly escalates the next update to DEBUG.
        if number == 1:
            assert "layer_grad_stats" not in update.data
        else:
            _assert_layer_stats(update.data, trainer)
    assert trainer.escalation.level == TelemetryLevel.DEBUG


def test_escalation_expires_after_the_configured_updates(
    events: EventRecorder,
    make_config: MakeConfig,
    synthetic: Dataset,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    quiet = AnomalyThresholds(
        ratio_explosion=math.inf,
        ratio_collapse=0.0,
        value_collapse=-math.inf,
        grad_vanishing=0.0,
        grad_exploding=math.inf,
        escalation_updates=1,
    )
    config = make_config(anomaly=quiet, episodes=6, max_epochs=3)
    trainer = VectorizedTrainer(config, synthetic)
    real_check = trainer.detector.check
    calls: list[int] = []

    def once(metrics: Any) -> list[Anomaly]:
        calls.append(1)
        found = real_check(metrics)
        if len(calls) == 1:
            found.append(Anomaly("value_collapse", EventType.VALUE_COLLAPSE_DETECTED, "forced"))
        return found

    monkeypatch.setattr(trainer.detector, "check", once)
    run_all(trainer)

    updates = events.of_type(EventType.PPO_UPDATE_COMPLETED)
    assert [("layer_grad_stats" in u.data) for u in updates] == [False, True, False]
    assert len(events.of_type(EventType.VALUE_COLLAPSE_DETECTED)) == 1
    assert trainer.escalation.level == TelemetryLevel.NORMAL


# --- determinism ----------------------------------------------------------------------------


def test_same_seed_gives_the_same_event_stream_and_another_seed_differs(
    events: EventRecorder, make_config: MakeConfig, synthetic: Dataset
) -> None:
    def stream(seed: int) -> list[tuple[Any, ...]]:
        events.clear()
        run_all(VectorizedTrainer(make_config(seed=seed, episodes=2, max_epochs=6), synthetic))
        return comparable(events)

    first, again, other = stream(0), stream(0), stream(1)
    assert any(item[0] == EventType.PPO_UPDATE_COMPLETED for item in first)
    assert first == again
    assert first != other


# --- checkpoints ----------------------------------------------------------------------------


def _seed_ids(events: EventRecorder) -> list[str | None]:
    return [event.seed_id for event in events.of_type(EventType.SEED_GERMINATED)]


def test_checkpoint_round_trip_continues_the_run_exactly(
    events: EventRecorder, make_config: MakeConfig, synthetic: Dataset, tmp_path: Any
) -> None:
    # Episodes long enough to grow seeds: without one every reward is 0 and the update's
    # explained variance is NaN, which no comparison finds equal.
    config = make_config()
    original = VectorizedTrainer(config, synthetic)
    first = original.run_batch()
    path = tmp_path / "run.pt"
    save_checkpoint(path, original.state_dict())
    events.clear()
    expected = original.run_batch()
    expected_seeds = _seed_ids(events)
    events.clear()

    resumed = VectorizedTrainer(config, synthetic)
    resumed.load_state_dict(load_checkpoint(path))
    assert resumed.progress.batches_completed == first.batch == 1
    assert resumed.progress.episodes_completed == first.episodes_completed == 2
    assert list(resumed.progress.accuracies) == [first.avg_accuracy]
    assert list(resumed.progress.rewards) == [first.avg_reward]
    assert resumed.agent is not None and resumed.agent.train_steps == 1
    assert not resumed.finished
    continued = resumed.run_batch()
    assert continued.batch == 2 and continued.episodes_completed == 4
    assert resumed.finished
    assert continued == expected
    assert _seed_ids(events) == expected_seeds


@pytest.mark.parametrize(
    ("written", "loaded", "complaint"),
    [
        ({"controller": "heuristic"}, {"controller": "ppo"}, "controller"),
        ({"controller": "ppo"}, {"controller": "heuristic"}, "controller"),
        ({"recurrent": True}, {"recurrent": False}, "recurrent"),
        ({"envs": 2}, {"envs": 1}, "envs"),
        ({"max_epochs": 6}, {"max_epochs": 8}, "max_epochs"),
    ],
)
def test_checkpoint_of_another_setup_is_refused(
    events: EventRecorder,
    make_config: MakeConfig,
    synthetic: Dataset,
    written: dict[str, Any],
    loaded: dict[str, Any],
    complaint: str,
) -> None:
    state = VectorizedTrainer(make_config(**written), synthetic).state_dict()
    target = VectorizedTrainer(make_config(**loaded), synthetic)
    with pytest.raises(CheckpointError, match=complaint):
        target.load_state_dict(state)
    assert target.progress.batches_completed == 0
    assert target.progress.episodes_completed == 0


# --- commands -------------------------------------------------------------------------------

COMMAND_TYPES = (EventType.COMMAND_ISSUED, EventType.COMMAND_EXECUTED, EventType.COMMAND_FAILED)


def _commands(events: EventRecorder) -> list[TelemetryEvent]:
    return [event for event in events if event.event_type in COMMAND_TYPES]


def test_every_controller_decision_is_issued_then_executed_or_failed(
    events: EventRecorder, make_config: MakeConfig, synthetic: Dataset
) -> None:
    run_all(VectorizedTrainer(make_config(controller="heuristic"), synthetic))
    commands = _commands(events)
    issued = [e for e in commands if e.event_type == EventType.COMMAND_ISSUED]
    assert issued, "the heuristic run decided nothing"
    assert all(e.data["action"] != "WAIT" for e in commands)
    for event in issued:
        following = commands[commands.index(event) + 1]
        assert following.event_type in (EventType.COMMAND_EXECUTED, EventType.COMMAND_FAILED)
        assert {k: following.data[k] for k in event.data} == event.data
        assert event.data["controller"] == "heuristic"
        assert event.data["slot_id"] == SLOT_ID and event.epoch is not None
        if event.data["action"].startswith("GERMINATE_"):
            assert (
                event.data["blueprint"] == event.data["action"].removeprefix("GERMINATE_").lower()
            )
    executed_germinations = [
        e for e in commands if e.event_type == EventType.COMMAND_EXECUTED and "blueprint" in e.data
    ]
    assert len(executed_germinations) == len(events.of_type(EventType.SEED_GERMINATED))


def test_a_fossilize_the_gate_rejects_fails_with_its_reason(
    events: EventRecorder, make_config: MakeConfig, synthetic: Dataset
) -> None:
    strict_gate = replace(make_config().slot, min_fossilize_improvement=1000.0)
    env, run_epoch, epoch = _stabilized_env(make_config(slot=strict_gate), synthetic)
    assert run_command(env, Action.GERMINATE_CONV_HEAVY, allowed=True, controller="ppo")
    _step_until(env, run_epoch, epoch, SeedStage.PROBATIONARY)
    events.clear()
    assert not run_command(env, Action.FOSSILIZE, allowed=True, controller="ppo")
    issued, failed = _commands(events)
    assert issued.event_type == EventType.COMMAND_ISSUED
    assert failed.event_type == EventType.COMMAND_FAILED
    assert failed.data["reason"] == "rejected by the fossilization gate"
    assert failed.seed_id == env.slot.seed_id and env.slot.stage == SeedStage.PROBATIONARY


def test_masked_and_stage_invalid_commands_fail_and_wait_is_no_command(
    events: EventRecorder, fast_config: RunConfig, synthetic: Dataset
) -> None:
    env, _, _ = _stabilized_env(fast_config, synthetic)
    assert not run_command(env, Action.WAIT, allowed=True, controller="ppo")
    assert _commands(events) == []
    assert not run_command(env, Action.CULL, allowed=False, controller="ppo")
    assert run_command(env, Action.GERMINATE_NORM, allowed=True, controller="ppo")
    events.clear()
    assert not run_command(env, Action.FOSSILIZE, allowed=True, controller="ppo")
    (_, failed) = _commands(events)
    assert failed.data["reason"] == "invalid for stage TRAINING"
    assert env.slot.stage == SeedStage.TRAINING
