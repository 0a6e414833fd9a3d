"""The OpenTelemetry sink: each domain event becomes a span event, a log record and
metric updates.

One emission path feeds both the span event and the log record: `capture`, on the
emitting thread, adds the span event to the current span and notes the current context;
`deliver`, on the hub's delivery thread, emits the log record with that context (so its
trace and span ids are those of the span holding the span event) and updates the
metrics. The SDK has no processor that turns log records into span events, and one
would have to run on the emitting thread while the span is still open, building every
record's attributes there; this way the training thread only appends the deferred span
event and reads a context variable, and the record is built off it (event_logs.py).

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

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import SpanLimits
from opentelemetry.trace import SpanContext, Status, StatusCode

from app.contracts.events import EventType, Severity, TelemetryEvent
from instrumentation.otel.deferred_event import add_deferred_event
from instrumentation.otel.event_logs import EventLogs
from instrumentation.otel.metrics import EsperMetrics
from instrumentation.otel.span_event_attributes import event_name, timestamp_ns

__all__ = ["CurrentSpanIds", "OpenTelemetrySink", "current_span_ids", "event_name", "timestamp_ns"]

SINK_NAME = "otel"

_ERROR, _CRITICAL = Severity.ERROR, Severity.CRITICAL
_EPOCH_COMPLETED = EventType.EPOCH_COMPLETED


class CurrentSpanIds:
    """`current_span_ids()`: (trace_id, span_id) of the current span as lowercase hex if
    it is sampled, else None.

    The JSONL sink's `context_provider`: it ties each log line to the span that holds
    the same event in Jaeger. The sink calls `capture` on the emitting thread, which only
    notes the span's context, and `resolve` on its delivery thread, which formats it.
    """

    def __call__(self) -> tuple[str, str] | None:
        return self.resolve(self.capture())

    def capture(self) -> SpanContext | None:
        span = trace.get_current_span()
        return span.get_span_context() if span.is_recording() else None

    def resolve(self, captured: object) -> tuple[str, str] | None:
        # Spans that sampling left out are recorded too, for the metrics (sampling.py),
        # but no trace backend holds them: no ids to point at.
        if not isinstance(captured, SpanContext) or not captured.trace_flags.sampled:
            return None
        return trace.format_trace_id(captured.trace_id), trace.format_span_id(captured.span_id)


current_span_ids = CurrentSpanIds()


class OpenTelemetrySink:
    """A hub sink (instrumentation.sinks.TelemetrySink) that maps events to OTel.

    A deferred sink (instrumentation.sinks.base.DeferredSink): `capture` adds the span
    event to the current span on the emitting thread (it must land before the span ends),
    with its attributes built at export (deferred_event.py); `deliver` emits the log
    record (when `logs` is given: some log exporter is configured) and updates the
    metrics, on the hub's delivery thread. Flush and close do nothing: export belongs to
    the providers' background threads, and flushing them is
    `OpenTelemetrySession.shutdown`'s job, under its time bound, after the hub has closed.
    """

    name = SINK_NAME

    def __init__(
        self,
        metrics: EsperMetrics,
        limits: SpanLimits | None = None,
        logs: EventLogs | None = None,
    ) -> None:
        self._metrics = metrics
        self._limits = limits if limits is not None else SpanLimits()
        self._logs = logs

    def emit(self, event: TelemetryEvent) -> None:
        self.deliver(event, self.capture(event))

    def capture(self, event: TelemetryEvent) -> Context | None:
        """Add the span event; return the current context when the log record or a
        histogram's exemplar needs it."""
        span = trace.get_current_span()
        # Spans that sampling left out are recorded too, for the metrics (sampling.py),
        # but reach no trace backend.
        if span.get_span_context().trace_flags.sampled and span.is_recording():
            add_deferred_event(span, event, self._limits)
            # Identity with module constants, not set membership or class attributes:
            # hashing an enum member is a Python call, so is looking one up.
            severity = event.severity
            if severity is _ERROR or severity is _CRITICAL:
                span.set_status(Status(StatusCode.ERROR, event.message or event.event_type))
        if self._logs is not None or event.event_type is _EPOCH_COMPLETED:
            return otel_context.get_current()
        return None

    def deliver(self, event: TelemetryEvent, captured: object) -> None:
        context = captured if isinstance(captured, Context) else None
        if self._logs is not None:
            self._logs.emit(event, context)
        self._metrics.observe(event, context)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None
