"""Log records are accounted for like spans (attribute limits here; queue full and failed
exports in test_export_accounting.py), follow OTEL_LOGS_EXPORTER, and carry the event's
severity."""

from __future__ import annotations

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from otel_runs import emit_events, events_exported, receiver_for

from app.contracts.events import EventType, Severity, TelemetryEvent
from instrumentation.otel import configure_opentelemetry
from instrumentation.otel.errors import TelemetryConfigError
from instrumentation.otel.event_logs import EventLogs
from instrumentation.otel.summary import export_line


def test_attributes_over_the_log_record_limit_are_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each event has 4 standard attributes (type, id, severity, message) and 5 data keys:
    # 3 over the limit.
    session, receiver = events_exported(
        monkeypatch, "http/protobuf", 2, data_keys=5, OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT="6"
    )
    records = receiver.log_records()
    assert [record.dropped_attributes_count for record in records] == [3, 3]
    assert session.export_report().log_attributes == 6
    assert session.sink_errors()["log_limits"] == 6
    # The span events keep the span limits of their own: nothing dropped there.
    assert session.export_report().span_limits.total == 0
    assert "logs 2 records sent, none lost, log record limits dropped 6 attributes" in (
        export_line(session)
    )


def test_a_bad_log_record_limit_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "many")
    with pytest.raises(TelemetryConfigError, match="OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT"):
        configure_opentelemetry("limits", install_globally=False)


def test_logs_exporter_none_sends_no_log_records(monkeypatch: pytest.MonkeyPatch) -> None:
    session, receiver = events_exported(monkeypatch, "grpc", 3, OTEL_LOGS_EXPORTER="none")
    assert session.logger_provider is None
    assert receiver.spans() and not receiver.attempts["logs"]
    assert "logs" not in export_line(session)


def test_a_logs_endpoint_alone_exports_only_log_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = receiver_for("http/protobuf")
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", f"{receiver.endpoint}/v1/logs")
        session = configure_opentelemetry("logs-only", install_globally=False)
        emit_events(session, 3)
        session.shutdown(timeout_s=5)
    finally:
        receiver.stop()
    assert len(receiver.log_records()) == 3
    assert not receiver.attempts["traces"] and not receiver.attempts["metrics"]
    assert export_line(session) == "  export:    logs 3 records sent, none lost"


def test_console_log_records_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "console")
    session = configure_opentelemetry("console-logs", install_globally=False)
    emit_events(session, 2)
    session.shutdown(timeout_s=5)
    assert export_line(session) == "  export:    logs to console 2 records sent, none lost"


@pytest.mark.parametrize(
    ("severity", "number", "text"),
    [
        (Severity.DEBUG, SeverityNumber.DEBUG, "DEBUG"),
        (Severity.INFO, SeverityNumber.INFO, "INFO"),
        (Severity.WARNING, SeverityNumber.WARN, "WARN"),
        (Severity.ERROR, SeverityNumber.ERROR, "ERROR"),
        (Severity.CRITICAL, SeverityNumber.FATAL, "FATAL"),
    ],
)
def test_the_record_severity_follows_the_event(
    severity: Severity, number: SeverityNumber, text: str
) -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    event = TelemetryEvent(EventType.GRADIENT_PATHOLOGY_DETECTED, "bad", severity=severity)
    EventLogs(provider.get_logger("esper")).emit(event, None)
    (record,) = exporter.get_finished_logs()
    assert record.log_record.severity_number is number
    assert record.log_record.severity_text == text
    assert record.log_record.body == "bad"
    assert record.log_record.event_name == "esper.gradient_pathology_detected"


def test_an_event_on_a_span_left_out_by_sampling_has_no_trace_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As its JSONL line: no trace backend holds the span, a link to it would lead nowhere."""
    _, receiver = events_exported(monkeypatch, "grpc", 2, OTEL_TRACES_SAMPLER="always_off")
    records = receiver.log_records()
    assert len(records) == 2 and not receiver.spans()
    assert all(record.trace_id == b"" and record.span_id == b"" for record in records)
