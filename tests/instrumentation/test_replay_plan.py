"""How `esper replay` spreads a batch's events over spans, parts and traces: no span over
the span-event limit, no trace over its event and span bounds, every event placed once,
in log order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.contracts import telemetry_names as names
from app.contracts.events import EventType, TelemetryEvent
from instrumentation.jsonl_reader import LoggedEvent
from instrumentation.otel.adapter import timestamp_ns
from instrumentation.replay_plan import (
    BATCH_KEY,
    UPDATE_KEY,
    SpanKey,
    TraceLimits,
    TracePlan,
    plan_batch,
)

START = datetime(2025, 12, 6, tzinfo=UTC)


def event(
    n: int,
    kind: EventType = EventType.SEED_STAGE_CHANGED,
    env: int | None = None,
    epoch: int | None = None,
) -> LoggedEvent:
    data = {} if env is None else {"env_id": env}
    moment = START + timedelta(milliseconds=n)
    return LoggedEvent(TelemetryEvent(kind, data=data, epoch=epoch, timestamp=moment))


def placed(plans: list[TracePlan]) -> list[LoggedEvent]:
    return [logged for plan in plans for logged, _ in plan.events]


def test_a_full_span_continues_in_numbered_parts_under_the_same_parent() -> None:
    batch = [event(n, env=0) for n in range(7)]

    [plan] = plan_batch(batch, TraceLimits(span_events=3))

    root, *episodes = plan.spans
    assert [span.key for span in episodes] == [SpanKey(names.EPISODE_SPAN, 0)] * 3
    assert [len(span.events) for span in episodes] == [3, 3, 1]
    assert [span.attributes()[names.REPLAY_PART] for span in episodes] == [1, 2, 3]
    assert {span.attributes()[names.REPLAY_PARTS] for span in episodes} == {3}
    assert all(span.parent is root for span in episodes)
    assert placed([plan]) == batch
    first = episodes[0]
    assert (first.start_ns, first.end_ns) == (
        timestamp_ns(first.events[0].event.timestamp),
        timestamp_ns(first.events[-1].event.timestamp),
    )


def test_an_unsplit_span_has_no_part_attributes() -> None:
    [plan] = plan_batch([event(0, env=0)], TraceLimits(span_events=3))
    assert all(names.REPLAY_PART not in span.attributes() for span in plan.spans)


def test_new_children_go_under_the_latest_part_of_their_parent() -> None:
    batch = [
        event(0, env=0, epoch=1),
        *(event(n, env=0) for n in range(1, 4)),
        event(4, env=0, epoch=2),
        event(5, env=0, epoch=1),
    ]

    [plan] = plan_batch(batch, TraceLimits(span_events=2))

    episode_parts = [span for span in plan.spans if span.key.name == names.EPISODE_SPAN]
    epochs = {span.key.epoch: span for span in plan.spans if span.key.name == names.EPOCH_SPAN}
    assert len(episode_parts) == 2
    assert epochs[1].parent is episode_parts[0]
    assert epochs[2].parent is episode_parts[1]
    # The parent's range covers its children's, epoch 1's late event included.
    assert episode_parts[0].end_ns == epochs[1].end_ns


def test_the_update_span_and_the_root_are_split_too() -> None:
    batch = [event(n, EventType.RATIO_EXPLOSION_DETECTED) for n in range(5)]
    batch += [event(n, EventType.PLATEAU_DETECTED) for n in range(5, 10)]

    plans = plan_batch(batch, TraceLimits(span_events=2))

    updates = [span for plan in plans for span in plan.spans if span.key == UPDATE_KEY]
    assert [len(span.events) for span in updates] == [2, 2, 1]
    # The root has no parent to share: a full root continues in a new trace.
    roots = [plan.root for plan in plans]
    assert [len(root.events) for root in roots] == [2, 2, 1]
    assert [root.part for root in roots] == [1, 2, 3]
    assert [len(plan.spans) for plan in plans] == [4, 1, 1]
    assert all(root.key == BATCH_KEY and root.parent is None for root in roots)
    assert placed(plans) == batch


def test_a_huge_batch_is_spread_over_bounded_traces_in_log_order() -> None:
    batch = [event(n, env=n % 4, epoch=n // 40) for n in range(20_000)]
    limits = TraceLimits(span_events=128, trace_events=4096, trace_spans=64)

    plans = plan_batch(batch, limits)

    assert placed(plans) == batch
    for plan in plans:
        assert len(plan.events) <= 4096
        assert len(plan.spans) <= 64
        assert all(len(span.events) <= 128 for span in plan.spans)
        # Every span of a trace hangs off that trace's root.
        for span in plan.spans[1:]:
            ancestor = span
            while ancestor.parent is not None:
                ancestor = ancestor.parent
            assert ancestor is plan.root
    # 500 epochs of 4 environments need 2,000 epoch spans, so the span bound decides.
    assert len(plans) > 20_000 // 4096


def test_no_span_event_limit_keeps_one_span_per_key() -> None:
    batch = [event(n, env=0) for n in range(1000)]
    [plan] = plan_batch(batch, TraceLimits(span_events=None))
    assert [len(span.events) for span in plan.spans] == [0, 1000]
