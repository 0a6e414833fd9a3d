"""Every domain event of a real training run arrives as an OpenTelemetry log record, over
gRPC and HTTP, correlated with the span that holds its span event."""

from __future__ import annotations

from typing import Any

from opentelemetry._logs import SeverityNumber
from otel_runs import ExportedRun
from receivers import attributes_of, value_of

from app.contracts import telemetry_names as names

SEVERITIES = {
    "debug": (SeverityNumber.DEBUG, "DEBUG"),
    "info": (SeverityNumber.INFO, "INFO"),
    "warning": (SeverityNumber.WARN, "WARN"),
    "error": (SeverityNumber.ERROR, "ERROR"),
    "critical": (SeverityNumber.FATAL, "FATAL"),
}


def span_events(run: ExportedRun) -> dict[str, tuple[Any, Any]]:
    """(span, span event) by event id."""
    return {
        attributes_of(span_event.attributes)[names.EVENT_ID]: (span, span_event)
        for span in run.received.spans()
        for span_event in span.events
    }


def log_records(run: ExportedRun) -> dict[str, Any]:
    records = run.received.log_records()
    by_id = {attributes_of(record.attributes)[names.EVENT_ID]: record for record in records}
    assert len(by_id) == len(records), "an event was exported as two log records"
    return by_id


def test_as_many_log_records_as_jsonl_lines(exported_run: ExportedRun) -> None:
    records = log_records(exported_run)
    assert len(records) == len(exported_run.jsonl_lines) > 0
    assert records.keys() == {line["event_id"] for line in exported_run.jsonl_lines}


def test_a_log_record_is_its_span_event_with_the_trace_and_span_ids_of_its_span(
    exported_run: ExportedRun,
) -> None:
    holders = span_events(exported_run)
    for event_id, record in log_records(exported_run).items():
        span, span_event = holders[event_id]
        assert record.trace_id == span.trace_id
        assert record.span_id == span.span_id
        assert record.flags & 0x01, "sampled, as the span is"
        assert record.event_name == span_event.name
        assert record.time_unix_nano == span_event.time_unix_nano
        assert record.observed_time_unix_nano >= record.time_unix_nano
        assert attributes_of(record.attributes) == attributes_of(span_event.attributes)
        assert record.dropped_attributes_count == 0


def test_the_body_is_the_message_and_severity_follows_the_event(
    exported_run: ExportedRun,
) -> None:
    records = log_records(exported_run)
    for event in exported_run.events:
        record = records[event.event_id]
        assert value_of(record.body) == event.message
        number, text = SEVERITIES[event.severity.value]
        assert (record.severity_number, record.severity_text) == (number.value, text)


def test_the_jsonl_line_and_the_log_record_point_to_the_same_span(
    exported_run: ExportedRun,
) -> None:
    records = log_records(exported_run)
    for line in exported_run.jsonl_lines:
        record = records[line["event_id"]]
        assert (record.trace_id.hex(), record.span_id.hex()) == (line["trace_id"], line["span_id"])


def test_log_records_carry_the_run_resource(exported_run: ExportedRun) -> None:
    with exported_run.received.lock:
        requests = list(exported_run.received.log_requests)
    assert requests
    for request in requests:
        for resource_logs in request.resource_logs:
            resource = attributes_of(resource_logs.resource.attributes)
            assert resource[names.RUN_ID] == exported_run.run_id
            assert [scope.scope.name for scope in resource_logs.scope_logs] == ["esper"]
