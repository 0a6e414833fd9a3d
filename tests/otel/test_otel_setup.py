"""configure_opentelemetry: what the OTEL_* environment switches on and off, the resource,
clear errors for bad settings, and the shutdown bound against collectors that are down."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from receivers import BlackHole, GrpcReceiver, free_port

from app.contracts import telemetry_names as names
from app.contracts.events import EventType, Severity, TelemetryEvent
from instrumentation.otel import TelemetryConfigError, configure_opentelemetry, setup
from instrumentation.otel.environment import DEFAULT_EXPORT_TIMEOUT_S, SignalExport
from instrumentation.otel.resource import build_resource


@pytest.fixture
def no_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if an OTLP exporter is created."""

    def refuse(export: SignalExport, *preferences: object) -> None:
        raise AssertionError(f"an OTLP exporter was created for {export.signal}")

    monkeypatch.setattr(setup, "otlp_span_exporter", refuse)
    monkeypatch.setattr(setup, "otlp_metric_exporter", refuse)


def test_sdk_disabled_installs_nothing(monkeypatch: pytest.MonkeyPatch, no_otlp: None) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    session = configure_opentelemetry("run", prometheus_port=0)
    assert not session.enabled
    assert session.sink is None
    assert session.prometheus_port is None
    with trace.get_tracer("test").start_as_current_span(names.BATCH_SPAN) as span:
        assert not span.is_recording()
    assert session.shutdown(timeout_s=1)


def test_no_endpoint_creates_no_otlp_exporter(no_otlp: None) -> None:
    session = configure_opentelemetry("run", install_globally=False)
    assert session.enabled and session.sink is not None
    assert session.shutdown(timeout_s=2)


def test_exporter_variables_decide_over_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/v1/traces")
    assert SignalExport.from_environment("traces").otlp
    assert not SignalExport.from_environment("metrics").otlp
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert SignalExport.from_environment("traces").exporters == frozenset()
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "console, otlp")
    assert SignalExport.from_environment("metrics").exporters == {"console", "otlp"}


def test_protocol_default_and_per_signal_override(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SignalExport.from_environment("traces").protocol == "http/protobuf"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf")
    assert SignalExport.from_environment("traces").protocol == "grpc"
    assert SignalExport.from_environment("metrics").protocol == "http/protobuf"
    assert SignalExport.from_environment("traces").timeout_s == DEFAULT_EXPORT_TIMEOUT_S


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "http/json"),
        ("OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER"),
        ("OTEL_METRICS_EXPORTER", "prometheus", "--prometheus-port"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon", "OTEL_EXPORTER_OTLP_TIMEOUT"),
    ],
)
def test_bad_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(TelemetryConfigError, match=named):
        configure_opentelemetry("run", install_globally=False)


def test_port_in_use_is_a_clear_error() -> None:
    first = configure_opentelemetry("run", prometheus_port=0, install_globally=False)
    try:
        with pytest.raises(TelemetryConfigError, match=str(first.prometheus_port)):
            configure_opentelemetry(
                "run", prometheus_port=first.prometheus_port, install_globally=False
            )
    finally:
        first.shutdown(timeout_s=2)


def test_resource_service_name_default_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    attributes = build_resource("abc").attributes
    assert attributes["service.name"] == "esper-training"
    assert attributes["service.instance.id"] == attributes[names.RUN_ID] == "abc"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,team=ml")
    assert build_resource("abc").attributes["service.name"] == "from-attrs"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-name")
    attributes = build_resource("abc").attributes
    assert attributes["service.name"] == "from-name"
    assert attributes["team"] == "ml"


def test_a_second_session_takes_over_the_global_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = GrpcReceiver().start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        tracer = trace.get_tracer("esper.test")
        for run_id in ("first", "second"):
            session = configure_opentelemetry(run_id)
            with tracer.start_as_current_span(f"span-{run_id}"):
                pass
            assert session.shutdown(timeout_s=5)
        with tracer.start_as_current_span("after") as span:
            assert not span.is_recording()
        span_names = {span.name for span in receiver.spans()}
        assert span_names == {"span-first", "span-second"}
        run_ids = {
            value.value.string_value
            for resource in receiver.resources()
            for value in resource.attributes
            if value.key == names.RUN_ID
        }
        assert run_ids == {"first", "second"}
    finally:
        receiver.stop()


class _Hub:
    """The two members of TelemetryHub that the sink-error metric reads."""

    class _Sink:
        def __init__(self, name: str) -> None:
            self.name = name

    def __init__(self) -> None:
        self.sinks = (self._Sink("jsonl"), self._Sink("otel"))
        self.sink_errors = {"jsonl": 2}


@pytest.fixture
def dead_endpoint(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "closed port":
        yield f"http://127.0.0.1:{free_port()}"
    else:
        hole = BlackHole()
        yield hole.endpoint
        hole.stop()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("dead_endpoint", ["closed port", "never answers"], indirect=True)
def test_shutdown_is_bounded_when_the_collector_is_down(
    monkeypatch: pytest.MonkeyPatch, protocol: str, dead_endpoint: str
) -> None:
    """Export attempts take at most the OTLP timeout, and shutdown returns within its
    bound whatever they do; spans and events cost the training thread no waiting."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", dead_endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.5")
    session = configure_opentelemetry("run", install_globally=False)
    assert session.tracer_provider is not None and session.sink is not None
    session.report_sink_errors(_Hub())
    tracer = session.tracer_provider.get_tracer("test")
    started = time.perf_counter()
    for batch in range(50):
        with tracer.start_as_current_span(names.BATCH_SPAN, attributes={names.BATCH: batch}):
            session.sink.emit(TelemetryEvent(EventType.PLATEAU_DETECTED, data={"batch": batch}))
    assert time.perf_counter() - started < 0.5
    bound = 1.0
    started = time.perf_counter()
    session.shutdown(timeout_s=bound)
    assert time.perf_counter() - started < bound + 0.25
    errors = session.sink_errors()
    assert errors["jsonl"] == 2 and errors["otel"] == 0


def test_failed_exports_are_counted_as_sink_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.2")
    session = configure_opentelemetry("run", install_globally=False)
    assert session.tracer_provider is not None
    with session.tracer_provider.get_tracer("test").start_as_current_span(names.BATCH_SPAN):
        pass
    session.tracer_provider.force_flush(2000)
    assert session.sink_errors()["otlp_traces"] == 1
    session.shutdown(timeout_s=2)


def test_error_events_set_the_span_status(monkeypatch: pytest.MonkeyPatch) -> None:
    session = configure_opentelemetry("run", install_globally=False)
    assert session.tracer_provider is not None and session.sink is not None
    tracer = session.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span(names.BATCH_SPAN) as span:
        session.sink.emit(
            TelemetryEvent(EventType.COMMAND_FAILED, message="boom", severity=Severity.ERROR)
        )
        assert span.status.status_code == trace.StatusCode.ERROR  # type: ignore[attr-defined]
    session.shutdown(timeout_s=2)
