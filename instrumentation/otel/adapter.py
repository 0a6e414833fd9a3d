"""The OpenTelemetry sink: each domain event becomes a span event and metric updates.

Span events (docs/opentelemetry.md, a contract): name `esper.<event type in lower case>` on the span
current when the event was emitted (the innermost `esper.*` span), timestamp = the
event's own; attributes `esper.event.type`, `esper.event.id`, `esper.event.severity`,
`esper.seed_id`, `esper.slot_id`, `esper.epoch`, `esper.message` (nulls omitted) and every
data key as `esper.data.<key>`: nested objects flattened with dots, lists of primitives
kept as arrays, None omitted, non-finite floats kept as floats (OTLP carries NaN and
infinities as doubles). Severity error or critical sets the span's status to ERROR.

Limits. The SDK keeps at most 128 events per span and 128 attributes per event by
default (OTEL_SPAN_EVENT_COUNT_LIMIT, OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT) and silently
drops the rest. The largest event is a DEBUG PPO_UPDATE_COMPLETED: 21 data keys, the
standard attributes, and `layer_grad_stats`, 4 statistics for each parameter tensor of
the policy (12 tensors for the feedforward network, 10 for the LSTM), about 75
attributes. `environment.py` raises the per-event limit to 256 unless the environment sets
one, so a policy twice as deep still fits; flattened keys keep each statistic
searchable in Jaeger, which a JSON-encoded blob would not. Events per span stay far
below 128 because there is one trace per batch: an `esper.epoch` span gets its epoch's
EPOCH_COMPLETED and a few seed-lifecycle events, `esper.batch` the update and progress.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from app.contracts import telemetry_names as names
from app.contracts.events import EventType, Severity, TelemetryEvent
from instrumentation.otel.metrics import EsperMetrics
from instrumentation.otel.span_event_attributes import event_attributes

SINK_NAME = "otel"

_ERROR_SEVERITIES = frozenset({Severity.ERROR, Severity.CRITICAL})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NANOSECONDS_PER_MICROSECOND = 1000


def _sampled(span: trace.Span) -> bool:
    """Whether span is recorded and will be exported. Spans that sampling left out are
    recorded too, for the metrics (sampling.py), but reach no trace backend."""
    return span.is_recording() and span.get_span_context().trace_flags.sampled


def current_span_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span as lowercase hex if it is sampled, else None.

    The JSONL sink's `context_provider`: it ties each log line to the span that holds
    the same event in Jaeger.
    """
    span = trace.get_current_span()
    if not _sampled(span):
        return None
    context = span.get_span_context()
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


_EVENT_NAMES = {event_type: names.span_event_name(event_type) for event_type in EventType}


def event_name(event: TelemetryEvent) -> str:
    return _EVENT_NAMES[event.event_type]


def timestamp_ns(moment: datetime) -> int:
    """Nanoseconds since the Unix epoch, exact to the microsecond a datetime holds."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * _NANOSECONDS_PER_MICROSECOND


class OpenTelemetrySink:
    """A hub sink (instrumentation.sinks.TelemetrySink) that maps events to OTel.

    Flush and close do nothing: span and metric export belong to the providers'
    background threads, and flushing them is `OpenTelemetrySession.shutdown`'s job,
    under its time bound, after the hub has closed.
    """

    name = SINK_NAME

    def __init__(self, metrics: EsperMetrics) -> None:
        self._metrics = metrics

    def emit(self, event: TelemetryEvent) -> None:
        span = trace.get_current_span()
        if _sampled(span):
            span.add_event(
                event_name(event),
                attributes=event_attributes(event),
                timestamp=timestamp_ns(event.timestamp),
            )
            if event.severity in _ERROR_SEVERITIES:
                span.set_status(Status(StatusCode.ERROR, event.message or event.event_type))
        self._metrics.observe(event)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None
