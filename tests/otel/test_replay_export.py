"""`esper replay` ends with the same `export:` line as a training run: what was sent,
what was lost and why, checked against what the receiver stored; and it sends every
logged event as a log record too."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

import grpc
import pytest
from otel_runs import clear_otel_environment
from receivers import GrpcReceiver, HttpReceiver, Received, attributes_of

from app.cli import main
from app.contracts import telemetry_names as names
from app.contracts.events import TelemetryEvent


def replay(
    receiver: GrpcReceiver | HttpReceiver, protocol: str, log: Path, only_logs: bool = False
) -> tuple[int, list[str]]:
    """`esper replay log` exporting every signal to `receiver`, or log records alone."""
    with pytest.MonkeyPatch.context() as monkeypatch, redirect_stderr(io.StringIO()) as err:
        clear_otel_environment(monkeypatch)
        if only_logs:
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", f"{receiver.endpoint}/v1/logs")
        else:
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.5")
        code = main(["replay", str(log)])
    return code, err.getvalue().splitlines()


def replay_to(protocol: str, log: Path, answer: Any = None) -> tuple[Received, list[str]]:
    """Replay `log` to a fresh receiver (answering `answer`, if given): what it stored and
    the output; the replay must exit 0 (export losses are reported, not a replay error)."""
    receiver = (GrpcReceiver() if protocol == "grpc" else HttpReceiver()).start()
    receiver.fail_with = answer
    try:
        code, lines = replay(receiver, protocol, log)
    finally:
        receiver.stop()
    assert code == 0, lines
    return receiver, lines


def export_of(lines: list[str]) -> str:
    (line,) = [line for line in lines if line.startswith("  export:    ")]
    return line.removeprefix("  export:    ")


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_healthy_replay_reports_what_the_receiver_got(legacy_log: Path, protocol: str) -> None:
    receiver, lines = replay_to(protocol, legacy_log)
    spans, exports = len(receiver.spans()), len(receiver.metric_requests)
    records = len(receiver.log_records())
    assert spans > 0 and exports == 1 and records > 0
    assert export_of(lines) == (
        f"traces {spans} spans sent, none lost; logs {records} records sent, none lost; "
        "metrics 1 export sent, none lost"
    )


FAILURES: list[tuple[str, Any, str]] = [
    ("grpc", grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE"),
    ("http/protobuf", 503, "HTTP 503"),
]


@pytest.mark.parametrize(("protocol", "answer", "status"), FAILURES)
def test_a_failing_collector_is_reported_with_its_status(
    legacy_log: Path, protocol: str, answer: Any, status: str
) -> None:
    receiver, lines = replay_to(protocol, legacy_log, answer)
    summary = export_of(lines)
    assert summary.startswith("traces 0 spans sent, ")
    assert f"lost (export failed: {status})" in summary
    assert summary.endswith(f"metrics 0 exports sent, 1 lost (export failed: {status})")
    assert not receiver.spans() and receiver.attempts["traces"] >= 1


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_replay_sends_every_line_as_a_log_record_with_its_original_time(
    legacy_log: Path, protocol: str
) -> None:
    receiver, _ = replay_to(protocol, legacy_log)
    logged = [TelemetryEvent.from_record(json.loads(line)) for line in legacy_log.open()]
    records = {
        attributes_of(record.attributes)[names.EVENT_ID]: record
        for record in receiver.log_records()
    }
    assert len(records) == len(logged) == len(receiver.log_records())
    holders = {
        attributes_of(span_event.attributes)[names.EVENT_ID]: (span, span_event)
        for span in receiver.spans()
        for span_event in span.events
    }
    for event in logged:
        record = records[event.event_id]
        span, span_event = holders[event.event_id]
        assert record.time_unix_nano == span_event.time_unix_nano
        assert abs(record.time_unix_nano / 1e9 - event.timestamp.timestamp()) < 1e-5
        assert (record.trace_id, record.span_id) == (span.trace_id, span.span_id)
        assert record.event_name == span_event.name
        assert attributes_of(record.attributes) == attributes_of(span_event.attributes)


def test_a_replay_to_a_log_store_alone_sends_only_log_records(legacy_log: Path) -> None:
    receiver = HttpReceiver().start()
    try:
        code, lines = replay(receiver, "http/protobuf", legacy_log, only_logs=True)
    finally:
        receiver.stop()
    assert code == 0, lines
    records = len(receiver.log_records())
    assert records == sum(1 for _ in legacy_log.open())
    assert not receiver.attempts["traces"] and not receiver.attempts["metrics"]
    assert export_of(lines) == f"logs {records} records sent, none lost"
