"""Every span, log record and metric export is accounted for: sent, or lost with its reason, against
in-process receivers that answer with errors, answer slowly, hold requests, or are
missing (a closed port); the counts are checked against what the receiver stored."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from otel_runs import emit_events, receiver_for, session_for
from receivers import GrpcReceiver, HttpReceiver, Received, free_port

from app.contracts import telemetry_names as names
from instrumentation.otel import OpenTelemetrySession, failures
from instrumentation.otel.accounting import QUEUE_FULL, SHUTDOWN_BOUND, SinkLedger
from instrumentation.otel.batching import QueueSettings
from instrumentation.otel.errors import TelemetryConfigError
from instrumentation.otel.failures import http_session
from instrumentation.otel.summary import export_line


class Records(logging.Handler):
    """Every record that reaches the root logger's handlers, with the time it arrived."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[float, logging.LogRecord]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((time.monotonic(), record))

    def messages(self, since: float = 0.0) -> list[str]:
        return [record.getMessage() for at, record in self.records if at >= since]


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def make_spans(session: OpenTelemetrySession, count: int, events: int = 0) -> None:
    assert session.tracer_provider is not None
    tracer = session.tracer_provider.get_tracer("test")
    for number in range(count):
        with tracer.start_as_current_span(names.EPOCH_SPAN, attributes={"n": number}) as span:
            for event in range(events):
                span.add_event("esper.test", {f"a{key}": key for key in range(event + 1)})


def traces_report(session: OpenTelemetrySession) -> Any:
    (traces,) = [sink for sink in session.export_report().sinks if sink.signal == "traces"]
    return traces


# Per signal: its batch processor's variables, how to produce n items, and what arrived.
PRODUCERS: dict[str, tuple[str, Callable[[OpenTelemetrySession, int], None]]] = {
    "traces": ("BSP", make_spans),
    "logs": ("BLRP", emit_events),
}


@pytest.mark.parametrize("signal", ["traces", "logs"])
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_queue_full_drops_are_counted_exactly(
    monkeypatch: pytest.MonkeyPatch, records: Records, protocol: str, signal: str
) -> None:
    """Counted drops + items the receiver stored == items produced (spans, log records),
    with a queue of 4 and a receiver that takes 50 ms per export; the SDK's batch
    processor itself never finds its queue full (the count relies on that)."""
    processor, produce = PRODUCERS[signal]
    receiver = receiver_for(protocol)
    receiver.delay_s = 0.05
    try:
        session = session_for(
            monkeypatch,
            receiver.endpoint,
            protocol,
            OTEL_EXPORTER_OTLP_TIMEOUT="10",
            **{
                f"OTEL_{processor}_MAX_QUEUE_SIZE": "4",
                f"OTEL_{processor}_MAX_EXPORT_BATCH_SIZE": "2",
                f"OTEL_{processor}_SCHEDULE_DELAY": "10",
            },
        )
        produced = 300
        produce(session, produced)
        assert session.shutdown(timeout_s=30)
    finally:
        receiver.stop()
    (report,) = [sink for sink in session.export_report().sinks if sink.signal == signal]
    assert set(report.lost) == {QUEUE_FULL}
    assert report.lost[QUEUE_FULL] > 0
    stored = receiver.spans() if signal == "traces" else receiver.log_records()
    assert report.sent == len(stored)
    assert report.sent + report.lost[QUEUE_FULL] == produced
    assert session.sink_errors()[f"otlp_{signal}"] == report.lost[QUEUE_FULL]
    assert not [m for m in records.messages() if m.startswith("Queue full")]


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_blocked_receiver_loses_everything_and_every_span_is_counted(
    monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    receiver = receiver_for(protocol)
    receiver.hold()
    try:
        session = session_for(
            monkeypatch,
            receiver.endpoint,
            protocol,
            OTEL_BSP_MAX_QUEUE_SIZE="4",
            OTEL_BSP_MAX_EXPORT_BATCH_SIZE="2",
            OTEL_EXPORTER_OTLP_TIMEOUT="0.3",
        )
        produced = 100
        make_spans(session, produced)
        session.shutdown(timeout_s=1.5)
    finally:
        receiver.stop()
    traces = traces_report(session)
    assert traces.sent == 0 and not receiver.spans()
    assert sum(traces.lost.values()) == produced
    assert traces.lost[QUEUE_FULL] > 0
    assert session.sink_errors()["otlp_traces"] == produced


FAILURES = [
    ("http/protobuf", 503, "HTTP 503"),
    ("http/protobuf", 401, "HTTP 401"),
    ("grpc", grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE"),
    ("grpc", grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
]


@pytest.mark.parametrize(("protocol", "answer", "status"), FAILURES)
def test_failed_exports_carry_the_collectors_status(
    monkeypatch: pytest.MonkeyPatch, protocol: str, answer: Any, status: str
) -> None:
    receiver = receiver_for(protocol)
    receiver.fail_with = answer
    try:
        session = session_for(
            monkeypatch, receiver.endpoint, protocol, OTEL_EXPORTER_OTLP_TIMEOUT="0.5"
        )
        make_spans(session, 3)
        emit_events(session, 2)
        session.shutdown(timeout_s=5)
    finally:
        receiver.stop()
    assert all(receiver.attempts[signal] >= 1 for signal in ("traces", "metrics", "logs"))
    assert not receiver.spans() and not receiver.metric_requests
    assert not receiver.log_records()
    assert export_line(session) == (
        f"  export:    traces 0 spans sent, 4 lost (export failed: {status}); "
        f"logs 0 records sent, 2 lost (export failed: {status}); "
        f"metrics 0 exports sent, 1 lost (export failed: {status})"
    )
    assert session.sink_errors()["otlp_traces"] == 4
    assert session.sink_errors()["otlp_logs"] == 2
    assert session.sink_errors()["otlp_metrics"] == 1


@pytest.mark.parametrize(
    ("protocol", "status"), [("grpc", "UNAVAILABLE"), ("http/protobuf", "connection refused")]
)
def test_a_closed_port_is_reported(
    monkeypatch: pytest.MonkeyPatch, protocol: str, status: str
) -> None:
    session = session_for(
        monkeypatch,
        f"http://127.0.0.1:{free_port()}",
        protocol,
        OTEL_EXPORTER_OTLP_TIMEOUT="1.5",
    )
    make_spans(session, 5)
    session.shutdown(timeout_s=5)
    assert traces_report(session).lost == {f"export failed: {status}": 5}


def test_each_failure_keeps_its_own_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gRPC exporter's DuplicateFilter hides a record whose template repeats the
    previous one within 20 s; the failure reasons are read ahead of it."""
    receiver = GrpcReceiver().start()
    try:
        session = session_for(
            monkeypatch, receiver.endpoint, "grpc", OTEL_EXPORTER_OTLP_TIMEOUT="0.5"
        )
        assert session.tracer_provider is not None
        for answer in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT):
            receiver.fail_with = answer
            make_spans(session, 1)
            session.tracer_provider.force_flush()
        receiver.fail_with = None
        make_spans(session, 2)
        session.shutdown(timeout_s=5)
    finally:
        receiver.stop()
    traces = traces_report(session)
    assert traces.lost == {
        "export failed: PERMISSION_DENIED": 1,
        "export failed: INVALID_ARGUMENT": 1,
    }
    assert traces.sent == len(receiver.spans()) == 2


def test_span_limit_drops_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = HttpReceiver().start()
    try:
        session = session_for(
            monkeypatch,
            receiver.endpoint,
            "http/protobuf",
            OTEL_SPAN_EVENT_COUNT_LIMIT="2",
            OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT="3",
        )
        # Five events of 1..5 attributes: the oldest three are dropped, the two kept
        # (4 and 5 attributes) lose 1 and 2 attributes. Two spans: twice that.
        make_spans(session, 2, events=5)
        session.shutdown(timeout_s=5)
    finally:
        receiver.stop()
    report = session.export_report()
    assert (report.span_limits.events, report.span_limits.attributes) == (6, 6)
    assert session.sink_errors()["span_limits"] == 12
    spans = receiver.spans()
    assert sum(span.dropped_events_count for span in spans) == 6
    assert sum(e.dropped_attributes_count for span in spans for e in span.events) == 6
    assert export_line(session).endswith(
        "traces 2 spans sent, none lost, span limits dropped 6 events, 6 attributes; "
        "logs 0 records sent, none lost; metrics 1 export sent, none lost"
    )


def test_event_attribute_drops_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    session = session_for(
        monkeypatch,
        f"http://127.0.0.1:{free_port()}",
        "http/protobuf",
        OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT="2",
        OTEL_EXPORTER_OTLP_TIMEOUT="0.2",
    )
    make_spans(session, 1, events=4)  # 1 + 2 + 3 + 4 attributes, 2 kept per event
    session.shutdown(timeout_s=3)
    assert session.export_report().span_limits.attributes == 0 + 0 + 1 + 2


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_exports_in_flight_at_the_bound_are_lost_to_it_and_silenced(
    monkeypatch: pytest.MonkeyPatch, records: Records, protocol: str
) -> None:
    """A receiver that holds every request: at the shutdown bound the export in flight
    is booked as lost to the bound, and what the abandoned export logs later (its
    timeout, its cancellation) is not printed: the summary comes after the bound."""
    receiver: Received = receiver_for(protocol)
    receiver.hold()
    export_timeout_s = 2.5
    try:
        session = session_for(
            monkeypatch,
            receiver.endpoint,
            protocol,
            OTEL_EXPORTER_OTLP_TIMEOUT=str(export_timeout_s),
            OTEL_BSP_SCHEDULE_DELAY="50",
            OTEL_BLRP_SCHEDULE_DELAY="50",
        )
        make_spans(session, 6)
        emit_events(session, 5)  # in a seventh span
        time.sleep(0.3)  # the batches are exported, and held
        assert not session.shutdown(timeout_s=0.5)
        closed = time.monotonic()
        time.sleep(export_timeout_s + 1)
    finally:
        receiver.stop()
    lost = {sink.signal: sink.lost for sink in session.export_report().sinks}
    assert lost == {
        "traces": {SHUTDOWN_BOUND: 7},
        "logs": {SHUTDOWN_BOUND: 5},
        "metrics": {SHUTDOWN_BOUND: 1},
    }
    late = [m for m in records.messages(since=closed) if "export" in m.lower()]
    assert late == []


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "many"}, "OTEL_BSP_MAX_QUEUE_SIZE='many'"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "OTEL_BSP_MAX_QUEUE_SIZE='0' must be positive"),
        (
            {"OTEL_BSP_MAX_QUEUE_SIZE": "8", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "16"},
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=16 is larger than OTEL_BSP_MAX_QUEUE_SIZE=8",
        ),
        (
            {"OTEL_BLRP_MAX_QUEUE_SIZE": "8", "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "16"},
            "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE=16 is larger than OTEL_BLRP_MAX_QUEUE_SIZE=8",
        ),
        ({"OTEL_BSP_SCHEDULE_DELAY": "0"}, "OTEL_BSP_SCHEDULE_DELAY='0' must be"),
        ({"OTEL_BLRP_SCHEDULE_DELAY": "soon"}, "OTEL_BLRP_SCHEDULE_DELAY='soon' is not"),
        ({"OTEL_BLRP_EXPORT_TIMEOUT": "-1"}, "OTEL_BLRP_EXPORT_TIMEOUT='-1' must be"),
        ({"OTEL_METRIC_EXPORT_INTERVAL": "inf"}, "OTEL_METRIC_EXPORT_INTERVAL='inf' must be"),
        ({"OTEL_METRIC_EXPORT_INTERVAL": "0"}, "OTEL_METRIC_EXPORT_INTERVAL='0' must be"),
    ],
)
def test_bad_batching_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], named: str
) -> None:
    with pytest.raises(TelemetryConfigError) as raised:
        session_for(monkeypatch, "http://127.0.0.1:9", "grpc", **settings)
    assert named in str(raised.value)


def test_a_small_queue_alone_sets_a_batch_size_that_fits() -> None:
    assert QueueSettings.from_environment({"OTEL_BSP_MAX_QUEUE_SIZE": "4"}) == QueueSettings(4, 4)
    assert QueueSettings.from_environment({}) == QueueSettings(2048, 512)
    logs = QueueSettings.from_environment({}, processor="BLRP")
    assert logs == QueueSettings(2048, 512, schedule_delay_ms=1000.0)


def test_a_local_refusal_after_the_collectors_answer_keeps_the_answer() -> None:
    """Once its timeout is spent, the HTTP exporter retries with a zero timeout, which
    urllib3 refuses (ValueError) before sending anything: the collector's 503 before it
    stays the reported cause, through the session's adapter and the exporter's log."""
    receiver = HttpReceiver().start()
    receiver.fail_with = 503
    session = http_session("traces", environ={})
    assert session is not None
    url = f"{receiver.endpoint}/v1/traces"
    failures.watch(OTLPSpanExporter(endpoint=url, session=session))
    try:
        with failures.attempt(SinkLedger("otlp_traces", "traces", "span")) as attempt:
            assert session.post(url, timeout=2).status_code == 503
            with pytest.raises(ValueError) as refused:
                session.post(url, timeout=0)
            logging.getLogger(OTLPSpanExporter.__module__).error(
                "Failed to export %s batch code: %s, reason: %s", "span", None, refused.value
            )
        with (
            failures.attempt(SinkLedger("otlp_traces", "traces", "span")) as alone,
            pytest.raises(ValueError),
        ):
            session.post(url, timeout=0)
    finally:
        receiver.stop()
    assert attempt.failure_reason() == "export failed: HTTP 503"
    assert alone.failure_reason() == "export failed: ValueError"
