"""Anomaly detector, its warning events, and the telemetry escalation it drives."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from helpers import ANOMALY_FIELDS

from app import telemetry
from app.contracts.actions import NUM_ACTIONS
from app.contracts.events import EventType, Severity, TelemetryLevel
from app.rl.anomaly import (
    AnomalyDetector,
    AnomalyThresholds,
    TelemetryEscalation,
    anomaly_event,
    report,
)
from app.rl.buffer import RolloutBuffer
from app.rl.ppo import PPOAgent
from app.rl.ppo_config import PPOConfig
from app.rl.ppo_statistics import PPOUpdateMetrics

HEALTHY = PPOUpdateMetrics(
    policy_loss=0.001,
    value_loss=0.5,
    entropy=1.2,
    entropy_coef=0.05,
    approx_kl=0.004,
    clip_fraction=0.02,
    ratio_mean=1.0,
    ratio_max=1.14,
    ratio_min=0.84,
    ratio_std=0.03,
    explained_variance=0.6,
    early_stop_epoch=None,
    grad_norm=0.8,
    has_nan=False,
    has_inf=False,
    train_steps=17,
    layer_grad_stats=None,
)


def unhealthy(**changes) -> PPOUpdateMetrics:
    return dataclasses.replace(HEALTHY, **changes)


def test_healthy_update_has_no_anomalies():
    assert AnomalyDetector().check(HEALTHY) == []


CASES = {
    "ratio_explosion": (
        {"ratio_max": 7.21},
        EventType.RATIO_EXPLOSION_DETECTED,
        "ratio_max=7.210 > 5.0",
    ),
    "ratio_collapse": (
        {"ratio_min": 0.042},
        EventType.RATIO_COLLAPSE_DETECTED,
        "ratio_min=0.042 < 0.1",
    ),
    "value_collapse": (
        {"explained_variance": 0.003286898136138916},  # from the legacy log
        EventType.VALUE_COLLAPSE_DETECTED,
        "explained_variance=0.003 < 0.1",
    ),
    "numerical_instability": (
        {"has_nan": True},
        EventType.NUMERICAL_INSTABILITY_DETECTED,
        "NaN in losses, ratios or gradients; those minibatches skipped",
    ),
    "gradient_pathology-vanishing": (
        {"grad_norm": 3e-9},
        EventType.GRADIENT_PATHOLOGY_DETECTED,
        "grad_norm=3e-09 < 1e-07",
    ),
    "gradient_pathology-exploding": (
        {"grad_norm": 250.0},
        EventType.GRADIENT_PATHOLOGY_DETECTED,
        "grad_norm=250.000 > 100.0",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_each_anomaly_becomes_a_complete_warning_event(case, events):
    telemetry.set_level(TelemetryLevel.MINIMAL)
    changes, event_type, detail = CASES[case]
    metrics = unhealthy(**changes)

    anomalies = AnomalyDetector().check(metrics)
    reported = report(anomalies, metrics)

    assert [(a.anomaly_type, a.event_type, a.detail) for a in anomalies] == [
        (case.split("-")[0], event_type, detail)
    ]
    assert events == reported
    (event,) = reported
    assert event.event_type == event_type
    assert event.severity == Severity.WARNING
    assert event.data.keys() >= set(ANOMALY_FIELDS)
    assert event.data["anomaly_type"] == case.split("-")[0]
    assert event.data["detail"] == detail
    assert event.data["train_steps"] == 17
    for key in ("ratio_max", "ratio_min", "explained_variance", "approx_kl", "clip_fraction"):
        assert event.data[key] == getattr(metrics, key)
    assert event.data["entropy"] == metrics.entropy
    assert event.data["grad_norm"] == metrics.grad_norm


def test_inf_is_named_in_the_detail():
    (anomaly,) = AnomalyDetector().check(unhealthy(has_nan=True, has_inf=True))

    assert anomaly.detail.startswith("NaN and Inf in")


def test_nan_statistics_are_reported_once_and_kept_as_float_nan():
    nan = math.nan
    metrics = unhealthy(has_nan=True, ratio_max=nan, ratio_min=nan, grad_norm=nan)

    (anomaly,) = AnomalyDetector().check(metrics)
    event = anomaly_event(anomaly, metrics)

    assert anomaly.anomaly_type == "numerical_instability"
    assert isinstance(event.data["ratio_max"], float)
    assert math.isnan(event.data["ratio_max"])


def test_several_anomalies_in_one_update():
    metrics = unhealthy(ratio_max=9.0, ratio_min=0.01, explained_variance=-0.5)

    kinds = [a.anomaly_type for a in AnomalyDetector().check(metrics)]

    assert kinds == ["ratio_explosion", "ratio_collapse", "value_collapse"]


def test_a_fresh_critic_is_not_judged_during_its_warmup_updates():
    detector = AnomalyDetector(AnomalyThresholds(value_warmup_updates=2))
    found = [
        [a.anomaly_type for a in detector.check(unhealthy(train_steps=n, explained_variance=-0.7))]
        for n in (1, 2, 3, 40)
    ]

    assert found == [[], [], ["value_collapse"], ["value_collapse"]]


def test_the_warmup_spares_only_the_critic():
    metrics = unhealthy(train_steps=1, ratio_max=9.0, explained_variance=-0.7)

    assert [a.anomaly_type for a in AnomalyDetector().check(metrics)] == ["ratio_explosion"]


def test_without_a_warmup_the_first_update_is_judged():
    detector = AnomalyDetector(AnomalyThresholds(value_warmup_updates=0))
    (anomaly,) = detector.check(unhealthy(train_steps=1, explained_variance=-0.7))

    assert anomaly.anomaly_type == "value_collapse"


def _state_valued_rollout(agent: PPOAgent, envs: int = 64, steps: int = 3) -> RolloutBuffer:
    """Episodes whose every reward is the episode's hidden state (+1 or -1, shown in the
    observation) whatever the action: a critic can learn to explain all of their return."""
    buffer = agent.new_buffer(envs, steps)
    hidden = agent.initial_hidden(envs)
    state = torch.randint(0, 2, (envs,)).float() * 2 - 1
    masks = torch.ones(envs, NUM_ACTIONS, dtype=torch.bool)
    for t in range(steps):
        obs = torch.zeros(envs, 4)
        obs[:, 0], obs[:, 1] = state, t / steps
        result = agent.act(obs, masks, hidden)
        done = torch.full((envs,), float(t == steps - 1))
        buffer.add(obs, masks, result.actions, result.logprobs, result.values, state, done, hidden)
        hidden = result.hidden
    return buffer


def test_a_warmed_up_critic_that_collapses_is_caught():
    """A real agent: once warmed up its critic explains the returns and nothing is
    reported; scrambled, the critic explains nothing, and that is a value collapse."""
    torch.manual_seed(0)
    detector = AnomalyDetector()
    agent = PPOAgent(4, NUM_ACTIONS, PPOConfig(), recurrent=False)
    found = [
        [a.anomaly_type for a in detector.check(agent.update(_state_valued_rollout(agent)))]
        for _ in range(8)
    ]
    with torch.no_grad():
        for parameter in agent.network.critic.parameters():
            parameter.normal_(0.0, 3.0)
    collapsed = agent.update(_state_valued_rollout(agent))

    assert found[-3:] == [[]] * 3
    assert collapsed.train_steps > AnomalyThresholds().value_warmup_updates
    assert "value_collapse" in [a.anomaly_type for a in detector.check(collapsed)]


def test_custom_thresholds_change_the_outcome():
    strict = AnomalyDetector(AnomalyThresholds(ratio_explosion=1.1, grad_exploding=0.5))
    lenient = AnomalyDetector(AnomalyThresholds(value_collapse=-1.0, ratio_collapse=0.01))
    metrics = unhealthy(explained_variance=0.05, ratio_min=0.05)

    assert [a.anomaly_type for a in strict.check(HEALTHY)] == [
        "ratio_explosion",
        "gradient_pathology",
    ]
    assert lenient.check(metrics) == []
    assert len(AnomalyDetector().check(metrics)) == 2


def test_detector_emits_nothing_by_itself(events):
    telemetry.set_level(TelemetryLevel.MINIMAL)
    AnomalyDetector().check(unhealthy(ratio_max=9.0))

    assert events == []


def test_escalation_lasts_the_configured_number_of_updates():
    escalation = TelemetryEscalation(TelemetryLevel.NORMAL, updates=2)
    levels = [escalation.level]
    escalation.escalate()
    for _ in range(3):
        levels.append(escalation.level)
        escalation.tick()
    levels.append(escalation.level)

    assert levels == [
        TelemetryLevel.NORMAL,
        TelemetryLevel.DEBUG,
        TelemetryLevel.DEBUG,
        TelemetryLevel.NORMAL,
        TelemetryLevel.NORMAL,
    ]


def test_new_anomaly_restarts_the_escalation():
    escalation = TelemetryEscalation(TelemetryLevel.MINIMAL, updates=2)
    escalation.escalate()
    escalation.tick()
    escalation.escalate()
    escalation.tick()

    assert escalation.level == TelemetryLevel.DEBUG
    escalation.tick()
    assert escalation.level == TelemetryLevel.MINIMAL


def test_escalation_never_turns_telemetry_on():
    escalation = TelemetryEscalation(TelemetryLevel.OFF, updates=3)
    escalation.escalate()

    assert escalation.level == TelemetryLevel.OFF


def test_anomaly_escalates_next_update_to_layer_stats(memory_bandit, collect, events):
    """The training-loop wiring: an anomalous update makes the next ones collect DEBUG detail."""
    telemetry.set_level(TelemetryLevel.MINIMAL)
    # An untrained critic explains little: leave value collapse out of this wiring test.
    thresholds = AnomalyThresholds(value_collapse=-math.inf, escalation_updates=1)
    detector = AnomalyDetector(thresholds)
    escalation = TelemetryEscalation(TelemetryLevel.MINIMAL, thresholds.escalation_updates)
    agent = PPOAgent(memory_bandit.obs_dim, memory_bandit.num_actions, PPOConfig(), recurrent=True)
    layer_stats_seen = []
    for update in range(3):
        buffer = collect(agent, memory_bandit)
        if update == 0:
            buffer.rewards[-1, 0] = math.nan
        debug = escalation.level >= TelemetryLevel.DEBUG
        metrics = agent.update(buffer, collect_layer_stats=debug)
        layer_stats_seen.append(metrics.layer_grad_stats is not None)
        escalation.tick()
        anomalies = detector.check(metrics)
        report(anomalies, metrics)
        if anomalies:
            escalation.escalate()

    assert layer_stats_seen == [False, True, False]
    assert events[0].event_type == EventType.NUMERICAL_INSTABILITY_DETECTED
