"""`esper replay` records every event on a span, whatever the log's shape and the span
event limit in force, and counts only what the SDK really kept; replayed over real OTLP
(gRPC and HTTP) to an in-process receiver."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from otel_runs import PROTOCOLS
from receivers import attributes_of
from replay_runs import Replayed, original_ns, records, replay

from app.contracts import telemetry_names as names
from app.contracts.events import EventType, TelemetryEvent
from instrumentation.replay_plan import TRACE_EVENTS, TRACE_SPANS, TraceLimits

SDK_DEFAULT_SPAN_EVENTS = 128
SEED_LIFECYCLE = (
    EventType.SEED_GERMINATED,
    EventType.SEED_STAGE_CHANGED,
    EventType.SEED_FOSSILIZED,
    EventType.SEED_CULLED,
)


def heuristic_log(path: Path, envs: int = 4, per_env: int = 1100) -> list[dict[str, object]]:
    """A log shaped like the original system's heuristic runs: seed-lifecycle events of
    several environments without `epoch`, no PPO update at all (so one batch), plus
    events of the batch itself and anomalies (the update span's) by the hundred."""
    start = datetime(2025, 12, 6, 0, 42, tzinfo=UTC)
    written: list[dict[str, object]] = []

    def add(kind: EventType, **data: object) -> None:
        moment = start + timedelta(milliseconds=len(written))
        written.append(TelemetryEvent(kind, data=data, timestamp=moment).to_record())

    for step in range(per_env):
        for env in range(envs):
            add(SEED_LIFECYCLE[step % 4], env_id=env, seed_id=f"env{env}_seed_{step // 4}")
        if step % 5 == 0:
            add(EventType.PLATEAU_DETECTED, step=step)
            add(EventType.RATIO_EXPLOSION_DETECTED, step=step, ratio_max=12.5)
    path.write_text("".join(json.dumps(record) + "\n" for record in written))
    return written


def sent_times(written: list[dict[str, object]]) -> Counter[tuple[str, int]]:
    return Counter((str(record["event_id"]), original_ns(record)) for record in written)


def assert_within_limits(replayed: Replayed, span_events: int) -> None:
    """No span over the limit or with dropped events; every trace within its bounds."""
    for span in replayed.spans():
        assert len(span.events) <= span_events, span.name
        assert span.dropped_events_count == 0
    spans_per_trace = Counter(span.trace_id for span in replayed.spans())
    events_per_trace = Counter(span.trace_id for span in replayed.spans() for _ in span.events)
    assert max(spans_per_trace.values()) <= TRACE_SPANS
    assert max(events_per_trace.values()) <= TRACE_EVENTS


def assert_parts_are_siblings(replayed: Replayed) -> None:
    """The parts of a span in one trace share its name, attributes and parent, and are
    numbered 1..n across the batch."""
    batch_of = {
        root.trace_id: attributes_of(root.attributes)[names.BATCH]
        for root in replayed.spans(names.BATCH_SPAN)
    }
    parts: dict[tuple[object, ...], list[Span]] = defaultdict(list)
    for span in replayed.spans():
        attributes = attributes_of(span.attributes)
        if names.REPLAY_PART in attributes:
            batch = batch_of[span.trace_id]
            key = (batch, span.name, attributes.get(names.ENV_ID), attributes.get(names.EPOCH))
            parts[key].append(span)
    assert parts, "nothing was split"
    for key, spans in parts.items():
        numbers = sorted(attributes_of(span.attributes)[names.REPLAY_PART] for span in spans)
        assert numbers == list(range(1, len(spans) + 1)), key
        assert {attributes_of(span.attributes)[names.REPLAY_PARTS] for span in spans} == {
            len(spans)
        }
        parents_by_trace = defaultdict(set)
        for span in spans:
            parents_by_trace[span.trace_id].add(span.parent_span_id)
        assert all(len(parents) == 1 for parents in parents_by_trace.values()), key


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_event_of_a_huge_batch_arrives_and_no_span_exceeds_the_limit(
    protocol: str, tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    written = heuristic_log(log)
    assert len(written) > TRACE_EVENTS

    replayed = replay(protocol, [str(log), "--run-id", "heuristic"])

    assert replayed.code == 0, replayed.stderr
    assert replayed.event_times() == sent_times(written)
    assert_within_limits(replayed, SDK_DEFAULT_SPAN_EVENTS)
    assert_parts_are_siblings(replayed)
    assert f"events:    {len(written)} replayed" in replayed.stderr
    roots = replayed.spans(names.BATCH_SPAN)
    assert len(roots) >= 2, "a batch over the trace bound continues in another trace"
    assert f"traces:    {len(roots)} trace(s) for 1 batch(es)" in replayed.stderr
    [run] = replayed.spans(names.RUN_SPAN)
    assert all(root.links[0].span_id == run.span_id for root in roots)
    # Every split kind: the episodes, the update span and the batch root itself.
    split = {
        span.name
        for span in replayed.spans()
        if names.REPLAY_PART in attributes_of(span.attributes)
    }
    assert split == {names.EPISODE_SPAN, names.UPDATE_SPAN, names.BATCH_SPAN}


def test_a_small_span_event_limit_from_the_environment_is_honoured(legacy_log: Path) -> None:
    replayed = replay("grpc", [str(legacy_log)], {"OTEL_SPAN_EVENT_COUNT_LIMIT": "5"})

    assert replayed.code == 0, replayed.stderr
    assert replayed.event_times() == sent_times(records(legacy_log))
    assert_within_limits(replayed, 5)
    assert_parts_are_siblings(replayed)
    assert "continued in parts of at most 5 events (esper.replay.part)" in replayed.stderr
    # Still the span docs/opentelemetry.md names, part or not.
    exported = replayed.span_events()
    for record in records(legacy_log):
        span, _ = exported[record["event_id"]]
        if "env_id" in record["data"] and span.name != names.UPDATE_SPAN:
            assert attributes_of(span.attributes)[names.ENV_ID] == record["data"]["env_id"]
            assert span.name == (
                names.EPISODE_SPAN if record["epoch"] is None else names.EPOCH_SPAN
            )


def test_parts_do_not_count_as_more_episodes_or_batches(legacy_log: Path) -> None:
    def counted(replayed: Replayed) -> tuple[int, int]:
        metrics = replayed.received.metrics()
        [point] = metrics[names.EPISODES][-1].sum.data_points
        [batches] = metrics[names.BATCH_DURATION][-1].histogram.data_points
        return point.as_int, batches.count

    whole = replay("http/protobuf", [str(legacy_log)])
    split = replay("http/protobuf", [str(legacy_log)], {"OTEL_SPAN_EVENT_COUNT_LIMIT": "3"})

    assert counted(split) == counted(whole)


def test_events_the_sdk_drops_anyway_are_reported_and_fail_the_replay(
    legacy_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A planner that ignores the limit: the fault the accounting must catch.
    monkeypatch.setattr(
        "instrumentation.replay._trace_limits", lambda span_limits: TraceLimits(span_events=None)
    )

    replayed = replay("grpc", [str(legacy_log)], {"OTEL_SPAN_EVENT_COUNT_LIMIT": "5"})

    received = sum(replayed.event_times().values())
    dropped = len(records(legacy_log)) - received
    assert dropped > 0
    assert replayed.code == 1
    assert f"events:    {received} replayed" in replayed.stderr
    assert f"dropped:   {dropped} event(s) over the span event limit" in replayed.stderr


def test_events_on_spans_the_sampler_drops_are_reported(legacy_log: Path) -> None:
    replayed = replay("grpc", [str(legacy_log)], {"OTEL_TRACES_SAMPLER": "always_off"})

    assert replayed.code == 1
    assert replayed.spans() == []
    assert "events:    0 replayed" in replayed.stderr
    assert "unsampled: 170 event(s)" in replayed.stderr


def test_a_span_event_limit_of_zero_is_refused(legacy_log: Path) -> None:
    replayed = replay("grpc", [str(legacy_log)], {"OTEL_SPAN_EVENT_COUNT_LIMIT": "0"})

    assert replayed.code == 2
    assert replayed.stderr.count("\n") == 1
    assert "OTEL_SPAN_EVENT_COUNT_LIMIT=0" in replayed.stderr
    assert replayed.spans() == []
