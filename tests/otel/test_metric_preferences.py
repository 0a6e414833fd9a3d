"""The metric reader asks for what the OTLP exporter prefers: the temporality and
histogram aggregation of OTEL_EXPORTER_OTLP_METRICS_* reach the collector, through the
counting wrapper that stands between the reader and the exporter."""

from __future__ import annotations

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from receivers import GrpcReceiver, HttpReceiver

from app.contracts import telemetry_names as names
from app.contracts.events import EventType, TelemetryEvent
from instrumentation.otel import configure_opentelemetry
from instrumentation.otel.instruments import SECONDS_BUCKETS

CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA


def export_metrics(
    protocol: str, monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]
) -> GrpcReceiver | HttpReceiver:
    """One event and one batch span through a session exporting to a fresh receiver;
    the metrics arrive in the final collection at shutdown."""
    receiver = (GrpcReceiver() if protocol == "grpc" else HttpReceiver()).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    try:
        session = configure_opentelemetry("run", install_globally=False)
        assert session.tracer_provider is not None and session.sink is not None
        with session.tracer_provider.get_tracer("test").start_as_current_span(names.BATCH_SPAN):
            session.sink.emit(TelemetryEvent(EventType.PLATEAU_DETECTED, data={"batch": 1}))
        assert session.shutdown(timeout_s=5)
    finally:
        receiver.stop()
    return receiver


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize(
    ("preference", "counter", "histogram"),
    [
        (None, CUMULATIVE, CUMULATIVE),
        ("delta", DELTA, DELTA),
        ("LowMemory", CUMULATIVE, DELTA),
    ],
)
def test_temporality_preference_reaches_the_collector(
    monkeypatch: pytest.MonkeyPatch,
    protocol: str,
    preference: str | None,
    counter: int,
    histogram: int,
) -> None:
    environment = (
        {}
        if preference is None
        else {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": preference}
    )
    metrics = export_metrics(protocol, monkeypatch, environment).metrics()
    assert metrics[names.EVENTS][-1].sum.aggregation_temporality == counter
    [batches] = metrics[names.BATCH_DURATION]
    assert batches.histogram.aggregation_temporality == histogram
    assert tuple(batches.histogram.data_points[0].explicit_bounds) == SECONDS_BUCKETS


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_exponential_histograms_reach_the_collector(
    monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    variable = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"
    environment = {variable: "base2_exponential_bucket_histogram"}
    metrics = export_metrics(protocol, monkeypatch, environment).metrics()
    [batches] = metrics[names.BATCH_DURATION]
    assert batches.WhichOneof("data") == "exponential_histogram"
    assert batches.exponential_histogram.data_points[0].count == 1
