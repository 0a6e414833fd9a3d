"""Domain events as OpenTelemetry log records (docs/opentelemetry.md, a contract).

Each event becomes one log record: event name `esper.<event type in lower case>` (the
span event's name), body the event's message, timestamp the event's own, severity mapped
from the event's, attributes those of its span event (`span_event_attributes.py`), and
trace and span ids from the context that was current where the event was emitted: the
span its span event lands on. An event on a span that sampling left out carries no ids,
as its JSONL line carries none: no trace backend holds that span, and a link to it would
lead nowhere. Records go through the Logs API of the session's own logger provider, never
the global one, so that only this run's exporters see them.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry._logs import Logger, SeverityNumber
from opentelemetry.context import Context

from app.contracts.events import Severity, TelemetryEvent
from instrumentation.otel.span_event_attributes import event_attributes, event_name, timestamp_ns

LOGGER_NAME = "esper"

SEVERITY_NUMBERS = {
    Severity.DEBUG: SeverityNumber.DEBUG,
    Severity.INFO: SeverityNumber.INFO,
    Severity.WARNING: SeverityNumber.WARN,
    Severity.ERROR: SeverityNumber.ERROR,
    Severity.CRITICAL: SeverityNumber.FATAL,
}
# The short names of the OpenTelemetry log data model, which Loki and Grafana show.
SEVERITY_TEXTS = {
    Severity.DEBUG: "DEBUG",
    Severity.INFO: "INFO",
    Severity.WARNING: "WARN",
    Severity.ERROR: "ERROR",
    Severity.CRITICAL: "FATAL",
}


# A context whose span is invalid: a record emitted in it has no trace or span id. (An
# empty context would not do: the SDK reads the current one in its place.)
_UNCORRELATED = trace.set_span_in_context(trace.INVALID_SPAN)


class EventLogs:
    """Emits the log record of a domain event through `logger`."""

    def __init__(self, logger: Logger) -> None:
        self._logger = logger

    def emit(self, event: TelemetryEvent, context: Context | None) -> None:
        """Emit event's log record; `context` is the one current where it was emitted."""
        severity = event.severity
        self._logger.emit(
            timestamp=timestamp_ns(event.timestamp),
            context=correlation(context),
            severity_number=SEVERITY_NUMBERS[severity],
            severity_text=SEVERITY_TEXTS[severity],
            body=event.message,
            attributes=event_attributes(event),
            event_name=event_name(event),
        )


def correlation(context: Context | None) -> Context:
    """`context` when its span was sampled, else one that gives a record no ids."""
    if context is None:
        return _UNCORRELATED
    sampled = trace.get_current_span(context).get_span_context().trace_flags.sampled
    return context if sampled else _UNCORRELATED
