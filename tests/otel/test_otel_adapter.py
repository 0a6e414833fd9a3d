"""The event-to-attribute mapping of docs/opentelemetry.md and the JSONL span-id provider."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
from opentelemetry.sdk.trace import TracerProvider

from app.contracts import telemetry_names as names
from app.contracts.events import EventType, TelemetryEvent
from instrumentation.otel.adapter import current_span_ids, timestamp_ns
from instrumentation.otel.span_event_attributes import event_attributes


def test_nested_data_is_flattened_lists_kept_and_nulls_omitted() -> None:
    event = TelemetryEvent(
        EventType.PPO_UPDATE_COMPLETED,
        data={
            "layer_grad_stats": {"actor.0.weight": {"norm": 1.5, "max_abs": float("nan")}},
            "sizes": [1, 2, 3],
            "mixed": [1, 2.5],
            "labels": ("a", "b"),
            "gone": None,
            "count": np.int64(7),
            "ratio": np.float32(0.5),
            "flag": True,
        },
    )
    attributes = event_attributes(event)
    assert attributes["esper.data.layer_grad_stats.actor.0.weight.norm"] == 1.5
    assert math.isnan(attributes["esper.data.layer_grad_stats.actor.0.weight.max_abs"])  # type: ignore[arg-type]
    assert attributes["esper.data.sizes"] == [1, 2, 3]
    assert attributes["esper.data.mixed"] == [1.0, 2.5]
    assert attributes["esper.data.labels"] == ["a", "b"]
    assert attributes["esper.data.count"] == 7 and type(attributes["esper.data.count"]) is int
    assert attributes["esper.data.ratio"] == 0.5
    assert attributes["esper.data.flag"] is True
    assert "esper.data.gone" not in attributes
    assert names.SEED_ID not in attributes and names.MESSAGE not in attributes


def test_timestamps_keep_microseconds() -> None:
    moment = datetime(2025, 12, 6, 12, 30, 1, 123456, tzinfo=UTC)
    assert timestamp_ns(moment) == 1765024201123456000


def test_span_ids_only_inside_a_recording_span() -> None:
    assert current_span_ids() is None
    provider = TracerProvider()
    with provider.get_tracer("test").start_as_current_span(names.BATCH_SPAN) as span:
        ids = current_span_ids()
        context = span.get_span_context()
        assert ids == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    provider.shutdown()
