from __future__ import annotations

import io
import json
from pathlib import Path

from app.contracts.events import EventType, Severity, TelemetryEvent
from instrumentation.sinks.console import ConsoleSink, format_value


def _printed(events: list[TelemetryEvent], *, verbose: bool) -> list[str]:
    stream = io.StringIO()
    sink = ConsoleSink(verbose=verbose, stream=stream)
    for event in events:
        sink.emit(event)
    sink.close()
    return stream.getvalue().splitlines()


def _legacy_events(legacy_log: Path) -> list[TelemetryEvent]:
    return [
        TelemetryEvent.from_record(json.loads(line)) for line in legacy_log.read_text().splitlines()
    ]


def test_compact_shows_ppo_updates_and_alerts_but_not_epoch_noise() -> None:
    ppo = TelemetryEvent(
        EventType.PPO_UPDATE_COMPLETED,
        data={
            "batch": 7,
            "episodes_completed": 28,
            "avg_accuracy": 77.4025,
            "avg_reward": 1198.217160228312,
            "policy_loss": 0.0013327109068632125,
            "value_loss": 62.32181663513184,
            "entropy": 0.25744604259729387,
            "approx_kl": 0.000730019233742496,
            "clip_fraction": 0.0,
        },
    )
    alert = TelemetryEvent(
        EventType.RATIO_EXPLOSION_DETECTED,
        severity=Severity.WARNING,
        data={"anomaly_type": "ratio_explosion", "detail": "ratio_max=7.2 > 5.0"},
    )
    noise = [
        TelemetryEvent(EventType.EPOCH_COMPLETED, data={"val_loss": 1.0}),
        TelemetryEvent(EventType.SEED_STAGE_CHANGED, data={"from": "TRAINING"}),
        TelemetryEvent(EventType.COMMAND_ISSUED),
    ]

    lines = _printed([*noise, ppo, alert], verbose=False)

    assert lines == [
        "ppo update: batch=7 episodes=28 acc=77.4 reward=1198 policy_loss=0.001333 "
        "value_loss=62.32 entropy=0.2574 kl=0.00073 clip=0",
        "WARNING RATIO_EXPLOSION_DETECTED: ratio_max=7.2 > 5.0",
    ]


def test_compact_shows_stabilization_seed_outcomes_and_progress() -> None:
    events = [
        TelemetryEvent(EventType.TAMIYO_INITIATED, data={"env_id": 1, "epoch": 11}),
        TelemetryEvent(EventType.SEED_GERMINATED, data={"seed_id": "env1_seed_0"}),
        TelemetryEvent(EventType.SEED_FOSSILIZED, data={"improvement": 5.449999999999996}),
        TelemetryEvent(EventType.SEED_CULLED, data={"reason": "governor_rollback"}),
        TelemetryEvent(EventType.PLATEAU_DETECTED, data={"batch": 9, "smoothed_delta": 0.1}),
    ]

    assert _printed(events, verbose=False) == [
        "host stabilized: env=1 epoch=11",
        "seed germinated: seed=env1_seed_0",
        "seed fossilized: improvement=5.45",
        "seed culled: reason=governor_rollback",
        "plateau: batch=9 delta=0.1",
    ]


def test_verbose_shows_every_event_with_all_its_data(legacy_log: Path) -> None:
    events = _legacy_events(legacy_log)

    lines = _printed(events, verbose=True)

    assert len(lines) == len(events)
    assert lines[0] == (
        "00:42:14.055 info TAMIYO_INITIATED epoch=11 "
        '"Host stabilized - germination now allowed" '
        "env_id=1 epoch=11 stable_count=3 stabilization_epochs=3 val_loss=1.159"
    )
    assert lines[2] == (
        "00:42:14.197 info SEED_STAGE_CHANGED seed=env1_seed_0 slot=block2_post "
        "from=GERMINATED to=TRAINING env_id=1"
    )


def test_compact_on_the_legacy_log_skips_stage_changes_only(legacy_log: Path) -> None:
    events = _legacy_events(legacy_log)

    lines = _printed(events, verbose=False)

    stage_changes = sum(event.event_type is EventType.SEED_STAGE_CHANGED for event in events)
    assert len(lines) == len(events) - stage_changes
    assert sum(line.startswith("WARNING VALUE_COLLAPSE_DETECTED") for line in lines) == 3


def test_format_value_is_compact() -> None:
    assert format_value(123456.789) == "1.235e+05"
    assert format_value(None) == "null"
    assert format_value({"a": [0.5, 2], "b": True}) == "{a=[0.5, 2], b=True}"
