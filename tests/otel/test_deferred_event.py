"""A span event whose attributes are built at export equals the one `Span.add_event`
builds at once: same name, timestamp, attributes and dropped count, under any limits."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from opentelemetry.sdk.trace import Event, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.contracts.events import EventType, Severity, TelemetryEvent
from instrumentation.otel.adapter import event_name, timestamp_ns
from instrumentation.otel.deferred_event import add_deferred_event
from instrumentation.otel.span_event_attributes import event_attributes

EVENTS = [
    TelemetryEvent(
        EventType.PPO_UPDATE_COMPLETED,
        message="PPO update 3",
        data={
            "batch": 3,
            "policy_loss": float("nan"),
            "entropy": np.float32(1.5),
            "steps": np.int64(7),
            "layer_grad_stats": {f"layer{n}": {"norm": n / 3, "max": n} for n in range(12)},
            "rewards": [1, 2.5, None],
            "flags": (True, False),
            "note": None,
            "long": "x" * 40,
        },
    ),
    TelemetryEvent(
        EventType.EPOCH_COMPLETED,
        seed_id="seed-1",
        slot_id="block2_post",
        epoch=4,
        severity=Severity.ERROR,
        timestamp=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        data={"env_id": 0, "val_loss": float("inf"), "alpha": 0.25},
    ),
]


def _exported(limits: SpanLimits, deferred: bool) -> list[Event]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("esper.batch") as span:
        for event in EVENTS:
            name, moment = event_name(event), timestamp_ns(event.timestamp)
            if deferred:
                add_deferred_event(span, event, limits)
            else:
                span.add_event(name, event_attributes(event), moment)
    (exported,) = exporter.get_finished_spans()
    return list(exported.events)


@pytest.mark.parametrize(
    "limits",
    [
        SpanLimits(),
        SpanLimits(max_event_attributes=256),
        SpanLimits(max_event_attributes=5, max_attribute_length=4),
    ],
    ids=["sdk-defaults", "esper-default", "tight"],
)
def test_deferred_events_export_as_add_event_would(limits: SpanLimits) -> None:
    eager, deferred = _exported(limits, False), _exported(limits, True)

    assert len(deferred) == len(eager) == len(EVENTS)
    for built_now, built_later in zip(eager, deferred, strict=True):
        assert built_later.name == built_now.name
        assert built_later.timestamp == built_now.timestamp
        # repr: NaN equals itself there, and the order of the keys counts.
        assert repr(built_later.attributes) == repr(built_now.attributes)
        assert built_later.dropped_attributes == built_now.dropped_attributes
    if limits.max_event_attributes == 5:
        assert deferred[0].dropped_attributes > 0, "the tight limits drop attributes"
