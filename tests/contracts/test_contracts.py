"""The shared contracts: seed stages and transitions, action masks, event types, the event
record (docs/events.md) and telemetry-level filtering."""

from __future__ import annotations

import copy
import itertools
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from helpers import EventRecorder

from app import telemetry
from app.contracts.actions import (
    BLUEPRINTS,
    NUM_ACTIONS,
    Action,
    action_mask,
    germinate_action,
)
from app.contracts.events import (
    RECORD_KEYS,
    EventType,
    Severity,
    TelemetryEvent,
    TelemetryLevel,
    minimum_level,
)
from app.contracts.stages import CULLABLE_STAGES, SeedStage, can_transition

S = SeedStage

# docs/training.md: the main line, CULLED from TRAINING/BLENDING/SHADOWING/PROBATIONARY,
# CULLED -> EMBARGOED -> DORMANT.
CONTRACT_TRANSITIONS = {
    (S.DORMANT, S.GERMINATED),
    (S.GERMINATED, S.TRAINING),
    (S.TRAINING, S.BLENDING),
    (S.BLENDING, S.SHADOWING),
    (S.SHADOWING, S.PROBATIONARY),
    (S.PROBATIONARY, S.FOSSILIZED),
    (S.TRAINING, S.CULLED),
    (S.BLENDING, S.CULLED),
    (S.SHADOWING, S.CULLED),
    (S.PROBATIONARY, S.CULLED),
    (S.CULLED, S.EMBARGOED),
    (S.EMBARGOED, S.DORMANT),
}
# Beyond the documented list: a GERMINATED seed is live, so it may be culled before it starts
# training, as in the original Leyline table.
EXTRA_TRANSITIONS = {(S.GERMINATED, S.CULLED)}
LIVE_STAGES = {S.GERMINATED, S.TRAINING, S.BLENDING, S.SHADOWING, S.PROBATIONARY}
# The live stages whose seed has touched the host's output, so a controller can judge it.
MEASURED_STAGES = {S.BLENDING, S.SHADOWING, S.PROBATIONARY}

CONTRACT_EVENT_TYPES = [
    "SEED_GERMINATED",
    "SEED_STAGE_CHANGED",
    "SEED_FOSSILIZED",
    "SEED_CULLED",
    "EPOCH_COMPLETED",
    "PLATEAU_DETECTED",
    "DEGRADATION_DETECTED",
    "IMPROVEMENT_DETECTED",
    "TAMIYO_INITIATED",
    "ISOLATION_VIOLATION",
    "GRADIENT_ANOMALY",
    "PERFORMANCE_DEGRADATION",
    "COMMAND_ISSUED",
    "COMMAND_EXECUTED",
    "COMMAND_FAILED",
    "PPO_UPDATE_COMPLETED",
    "MEMORY_WARNING",
    "REWARD_HACKING_SUSPECTED",
    "RATIO_EXPLOSION_DETECTED",
    "RATIO_COLLAPSE_DETECTED",
    "VALUE_COLLAPSE_DETECTED",
    "GRADIENT_PATHOLOGY_DETECTED",
    "NUMERICAL_INSTABILITY_DETECTED",
]


# ---------------------------------------------------------------- stages


@pytest.mark.parametrize(("source", "target"), sorted(CONTRACT_TRANSITIONS))
def test_design_transitions_are_allowed(source: SeedStage, target: SeedStage) -> None:
    assert can_transition(source, target)


def test_no_other_transition_is_allowed() -> None:
    allowed = CONTRACT_TRANSITIONS | EXTRA_TRANSITIONS
    for source, target in itertools.product(SeedStage, SeedStage):
        assert can_transition(source, target) == ((source, target) in allowed), (
            source.name,
            target.name,
        )


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (S.DORMANT, S.FOSSILIZED),
        (S.DORMANT, S.TRAINING),
        (S.DORMANT, S.CULLED),
        (S.TRAINING, S.FOSSILIZED),
        (S.BLENDING, S.FOSSILIZED),
        (S.SHADOWING, S.FOSSILIZED),
        (S.GERMINATED, S.BLENDING),
        (S.BLENDING, S.TRAINING),
        (S.PROBATIONARY, S.SHADOWING),
        (S.CULLED, S.DORMANT),
        (S.EMBARGOED, S.GERMINATED),
        (S.TRAINING, S.TRAINING),
    ],
)
def test_forbidden_transitions(source: SeedStage, target: SeedStage) -> None:
    assert not can_transition(source, target)


@pytest.mark.parametrize("target", list(SeedStage))
def test_fossilized_is_terminal(target: SeedStage) -> None:
    assert not can_transition(S.FOSSILIZED, target)


@pytest.mark.parametrize("source", [S.TRAINING, S.BLENDING, S.SHADOWING, S.PROBATIONARY])
def test_culled_is_reachable_from_live_stages(source: SeedStage) -> None:
    assert can_transition(source, S.CULLED)


def test_culled_leads_back_to_dormant_through_the_embargo() -> None:
    assert can_transition(S.CULLED, S.EMBARGOED)
    assert can_transition(S.EMBARGOED, S.DORMANT)
    assert not can_transition(S.CULLED, S.DORMANT)


def test_the_lifecycle_main_line_is_a_path() -> None:
    line = [
        S.DORMANT,
        S.GERMINATED,
        S.TRAINING,
        S.BLENDING,
        S.SHADOWING,
        S.PROBATIONARY,
        S.FOSSILIZED,
    ]
    assert all(can_transition(a, b) for a, b in itertools.pairwise(line))


def test_cullable_stages_are_the_live_ones() -> None:
    assert set(CULLABLE_STAGES) == LIVE_STAGES


# ---------------------------------------------------------------- actions and masks


def test_actions_cover_every_blueprint() -> None:
    assert {"conv_light", "conv_heavy", "depthwise", "attention", "norm"} <= set(BLUEPRINTS)
    assert len(Action) == NUM_ACTIONS
    germinates = [a for a in Action if a.is_germinate]
    assert sorted(str(a.blueprint) for a in germinates) == sorted(BLUEPRINTS)
    for blueprint in BLUEPRINTS:
        action = germinate_action(blueprint)
        assert action.is_germinate
        assert action.blueprint == blueprint
    for action in (Action.WAIT, Action.FOSSILIZE, Action.CULL):
        assert not action.is_germinate
        assert action.blueprint is None


def test_action_values_are_logit_indices() -> None:
    assert sorted(int(a) for a in Action) == list(range(NUM_ACTIONS))
    assert int(Action.WAIT) == 0


@pytest.mark.parametrize("stage", list(SeedStage), ids=[s.name for s in SeedStage])
@pytest.mark.parametrize("stabilized", [False, True])
def test_action_mask_rules(stage: SeedStage, stabilized: bool) -> None:
    mask = action_mask(stage, stabilized)
    assert len(mask) == NUM_ACTIONS
    assert all(isinstance(m, bool) for m in mask)
    assert mask[Action.WAIT]
    for action in Action:
        if action.is_germinate:
            assert mask[action] == (stage == S.DORMANT and stabilized), action.name
    assert mask[Action.FOSSILIZE] == (stage == S.PROBATIONARY)
    assert mask[Action.CULL] == (stage in MEASURED_STAGES)


def test_a_seed_is_not_culled_before_it_has_been_measured() -> None:
    for stage, stabilized in itertools.product((S.GERMINATED, S.TRAINING), (False, True)):
        assert action_mask(stage, stabilized) == [a == Action.WAIT for a in Action]


def test_germination_needs_a_stabilized_host() -> None:
    unstable = action_mask(S.DORMANT, host_stabilized=False)
    assert unstable == [a == Action.WAIT for a in Action]
    stable = action_mask(S.DORMANT, host_stabilized=True)
    assert [a for a in Action if stable[a]] == [Action.WAIT] + [a for a in Action if a.is_germinate]


def test_only_wait_in_inactive_stages() -> None:
    for stage, stabilized in itertools.product((S.FOSSILIZED, S.CULLED, S.EMBARGOED), (0, 1)):
        assert action_mask(stage, bool(stabilized)) == [a == Action.WAIT for a in Action]


# ---------------------------------------------------------------- event types


def test_event_types_are_exactly_the_design_list() -> None:
    assert len(CONTRACT_EVENT_TYPES) == 23
    assert [e.name for e in EventType] == CONTRACT_EVENT_TYPES
    assert len(EventType) == 23
    for event_type in EventType:
        assert event_type.value == event_type.name


def test_severities() -> None:
    assert [s.value for s in Severity] == ["debug", "info", "warning", "error", "critical"]


# ---------------------------------------------------------------- the event record


def sample_event() -> TelemetryEvent:
    return TelemetryEvent(
        event_type=EventType.SEED_CULLED,
        message="seed culled",
        data={"blueprint_id": "norm", "reason": "governor_rollback", "improvement": -1.5},
        seed_id="env0-seed3",
        slot_id="block2_post",
        epoch=12,
        severity=Severity.WARNING,
    )


def test_event_defaults() -> None:
    before = datetime.now(UTC)
    event = TelemetryEvent(event_type=EventType.EPOCH_COMPLETED)
    after = datetime.now(UTC)
    assert uuid.UUID(event.event_id).version == 4
    assert event.timestamp.utcoffset() == timedelta(0)
    assert before <= event.timestamp <= after
    assert event.severity == Severity.INFO
    assert (event.seed_id, event.slot_id, event.epoch) == (None, None, None)
    assert event.message == ""
    assert event.data == {}
    assert TelemetryEvent(event_type=EventType.EPOCH_COMPLETED).event_id != event.event_id


def test_to_record_key_order_and_values() -> None:
    event = sample_event()
    record = event.to_record()
    assert tuple(record) == RECORD_KEYS
    assert RECORD_KEYS == (
        "event_id",
        "event_type",
        "timestamp",
        "seed_id",
        "slot_id",
        "epoch",
        "message",
        "data",
        "severity",
    )
    assert record["event_type"] == "SEED_CULLED"
    assert record["severity"] == "warning"
    assert record["timestamp"] == event.timestamp.isoformat()
    assert datetime.fromisoformat(record["timestamp"]).utcoffset() == timedelta(0)
    assert record["data"] == event.data
    assert (record["seed_id"], record["slot_id"], record["epoch"]) == (
        "env0-seed3",
        "block2_post",
        12,
    )


def test_to_record_with_null_fields_keeps_every_key() -> None:
    record = TelemetryEvent(event_type=EventType.PPO_UPDATE_COMPLETED).to_record()
    assert tuple(record) == RECORD_KEYS
    assert record["seed_id"] is None and record["slot_id"] is None and record["epoch"] is None


def test_record_round_trip() -> None:
    event = sample_event()
    assert TelemetryEvent.from_record(event.to_record()) == event


def test_from_record_accepts_a_non_utc_offset() -> None:
    record = sample_event().to_record()
    record["timestamp"] = "2025-01-02T03:04:05.123456+02:00"
    event = TelemetryEvent.from_record(record)
    assert event.timestamp == datetime(2025, 1, 2, 1, 4, 5, 123456, tzinfo=UTC)
    assert event.timestamp.utcoffset() == timedelta(hours=2)
    assert event.timestamp.tzinfo == timezone(timedelta(hours=2))


def bad(record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    changed = copy.deepcopy(record)
    changed.update(changes)
    return changed


def test_from_record_rejects_an_unknown_event_type() -> None:
    record = bad(sample_event().to_record(), event_type="SEED_EXPLODED")
    with pytest.raises(ValueError, match="event_type") as info:
        TelemetryEvent.from_record(record)
    assert "SEED_EXPLODED" in str(info.value)


def test_from_record_rejects_a_lower_case_event_type() -> None:
    with pytest.raises(ValueError, match="seed_culled"):
        TelemetryEvent.from_record(bad(sample_event().to_record(), event_type="seed_culled"))


@pytest.mark.parametrize("severity", ["fatal", "INFO", "", None])
def test_from_record_rejects_a_bad_severity(severity: Any) -> None:
    record = bad(sample_event().to_record(), severity=severity)
    with pytest.raises(ValueError, match="severity") as info:
        TelemetryEvent.from_record(record)
    assert repr(severity) in str(info.value)


def test_from_record_rejects_a_naive_timestamp() -> None:
    record = bad(sample_event().to_record(), timestamp="2025-01-02T03:04:05.123456")
    with pytest.raises(ValueError, match="timestamp") as info:
        TelemetryEvent.from_record(record)
    message = str(info.value)
    assert "2025-01-02T03:04:05.123456" in message
    assert "offset" in message


@pytest.mark.parametrize("timestamp", ["yesterday", "", 1735787045, None])
def test_from_record_rejects_an_unparseable_timestamp(timestamp: Any) -> None:
    record = bad(sample_event().to_record(), timestamp=timestamp)
    with pytest.raises(ValueError, match="timestamp"):
        TelemetryEvent.from_record(record)


@pytest.mark.parametrize("key", RECORD_KEYS)
def test_from_record_rejects_a_missing_key(key: str) -> None:
    record = sample_event().to_record()
    del record[key]
    with pytest.raises(ValueError, match="missing") as info:
        TelemetryEvent.from_record(record)
    assert key in str(info.value)


def test_from_record_names_every_missing_key() -> None:
    record = sample_event().to_record()
    for key in ("severity", "data", "epoch"):
        del record[key]
    with pytest.raises(ValueError) as info:
        TelemetryEvent.from_record(record)
    message = str(info.value)
    assert all(key in message for key in ("severity", "data", "epoch"))
    assert "event_id" not in message


def test_from_record_rejects_non_object_data() -> None:
    with pytest.raises(ValueError, match="data"):
        TelemetryEvent.from_record(bad(sample_event().to_record(), data=[1, 2]))


def test_from_record_ignores_the_optional_trace_keys() -> None:
    event = sample_event()
    record = event.to_record()
    record["trace_id"] = "0af7651916cd43dd8448eb211c80319c"
    record["span_id"] = "b7ad6b7169203331"
    assert TelemetryEvent.from_record(record) == event


# ---------------------------------------------------------------- level filtering


def test_minimum_levels() -> None:
    assert minimum_level(EventType.EPOCH_COMPLETED) == TelemetryLevel.NORMAL
    assert minimum_level(EventType.PPO_UPDATE_COMPLETED) == TelemetryLevel.MINIMAL
    for event_type in (
        EventType.TAMIYO_INITIATED,
        EventType.RATIO_EXPLOSION_DETECTED,
        EventType.NUMERICAL_INSTABILITY_DETECTED,
        EventType.PLATEAU_DETECTED,
        EventType.SEED_FOSSILIZED,
        EventType.SEED_CULLED,
    ):
        assert minimum_level(event_type) == TelemetryLevel.MINIMAL, event_type
    assert TelemetryLevel.OFF < TelemetryLevel.MINIMAL < TelemetryLevel.NORMAL
    assert TelemetryLevel.NORMAL < TelemetryLevel.DEBUG


def emit_one_of_each() -> None:
    for event_type in EventType:
        telemetry.emit(TelemetryEvent(event_type=event_type))


def test_minimal_drops_epoch_completed_and_passes_ppo_updates(
    events: EventRecorder,
) -> None:
    telemetry.set_level(TelemetryLevel.MINIMAL)
    telemetry.emit(TelemetryEvent(event_type=EventType.EPOCH_COMPLETED))
    assert events == []
    ppo = TelemetryEvent(event_type=EventType.PPO_UPDATE_COMPLETED)
    telemetry.emit(ppo)
    assert events == [ppo]


def test_minimal_passes_exactly_the_minimal_events(events: EventRecorder) -> None:
    telemetry.set_level(TelemetryLevel.MINIMAL)
    emit_one_of_each()
    passed = {e.event_type for e in events}
    assert passed == {t for t in EventType if minimum_level(t) == TelemetryLevel.MINIMAL}
    assert EventType.EPOCH_COMPLETED not in passed
    assert EventType.PPO_UPDATE_COMPLETED in passed


def test_off_passes_nothing(events: EventRecorder) -> None:
    telemetry.set_level(TelemetryLevel.OFF)
    emit_one_of_each()
    assert events == []


@pytest.mark.parametrize("level", [TelemetryLevel.NORMAL, TelemetryLevel.DEBUG])
def test_normal_and_debug_pass_everything(events: EventRecorder, level: TelemetryLevel) -> None:
    telemetry.set_level(level)
    emit_one_of_each()
    assert [e.event_type for e in events] == list(EventType)


def test_emit_without_a_handler_is_a_no_op() -> None:
    previous = telemetry.event_handler()
    telemetry.set_event_handler(None)
    try:
        assert telemetry.event_handler() is None
        telemetry.emit(TelemetryEvent(event_type=EventType.PPO_UPDATE_COMPLETED))
    finally:
        telemetry.set_event_handler(previous)


def test_event_handler_returns_the_installed_handler() -> None:
    previous = telemetry.event_handler()
    handler = EventRecorder()
    try:
        telemetry.set_event_handler(handler)
        assert telemetry.event_handler() is handler
    finally:
        telemetry.set_event_handler(previous)
    assert telemetry.event_handler() is previous


@pytest.mark.parametrize(
    ("key", "value"),
    [("epoch", "abc"), ("epoch", True), ("message", None), ("seed_id", 3), ("event_id", 7)],
)
def test_from_record_rejects_a_field_of_the_wrong_type(key: str, value: Any) -> None:
    record = bad(sample_event().to_record(), **{key: value})
    with pytest.raises(ValueError, match=f"{key} has the wrong type"):
        TelemetryEvent.from_record(record)
