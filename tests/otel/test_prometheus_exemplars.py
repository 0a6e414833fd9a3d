"""The `--prometheus-port` endpoint carries exemplars: scraped in the OpenMetrics format,
a bucket of the duration histograms names the trace and span of a measurement that fell
in it (the span the duration measures); the classic text format and every other series
are what the exporter alone serves; spans that sampling dropped give none.

Real pieces throughout: the session's instruments, span processor and OTel sink on a
MeterProvider and TracerProvider of the SDK, scraped over HTTP."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, AlwaysRecordSampler, Sampler
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from app.contracts import telemetry_names as names
from app.contracts.events import EventType, TelemetryEvent
from instrumentation.otel.adapter import OpenTelemetrySink
from instrumentation.otel.instruments import METER_NAME, EsperInstruments
from instrumentation.otel.metric_state import MetricState
from instrumentation.otel.metrics import EsperMetrics, SpanMetricsProcessor
from instrumentation.otel.prometheus import PrometheusEndpoint, serve_prometheus

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
RUN_ID = "exemplars"
BATCH = "esper_batch_duration_seconds"
UPDATE = "esper_ppo_update_duration_seconds"
EPOCH = "esper_epoch_duration_seconds"
# An exemplar as the OpenMetrics text writes it: labels (sorted), value, timestamp.
EXEMPLAR = re.compile(
    r'_bucket\{[^}]*\} \S+ # \{span_id="[0-9a-f]{16}",trace_id="[0-9a-f]{32}"\} \S+ \d+\.\d+$'
)


@dataclass
class Telemetry:
    """A session's metric side, wired as configure_opentelemetry wires it, plus a plain
    exporter reader fed the same measurements and an in-memory (OTLP-like) reader."""

    endpoint: PrometheusEndpoint
    plain: CollectorRegistry
    otlp: InMemoryMetricReader
    meters: MeterProvider
    tracers: TracerProvider
    metrics: EsperMetrics

    def scrape(self, accept: str | None = None) -> str:
        headers = {"Accept": accept} if accept else {}
        url = f"http://127.0.0.1:{self.endpoint.port}/metrics"
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as reply:
            body: bytes = reply.read()
            return body.decode()

    def batch_with_update(self) -> tuple[ReadableSpan, ReadableSpan]:
        """An `esper.batch` span around an `esper.ppo.update`, as the trainer makes them."""
        tracer = self.tracers.get_tracer("esper.test")
        with (
            tracer.start_as_current_span(names.BATCH_SPAN) as batch,
            tracer.start_as_current_span(names.UPDATE_SPAN) as update,
        ):
            pass
        assert isinstance(batch, ReadableSpan) and isinstance(update, ReadableSpan)
        return batch, update


def telemetry(sampler: Sampler) -> Iterator[Telemetry]:
    endpoint = serve_prometheus(0, "127.0.0.1")
    plain = CollectorRegistry()
    otlp = InMemoryMetricReader()
    readers = [endpoint.reader, PrometheusMetricReader(scope_info_enabled=False, registry=plain)]
    meters = MeterProvider(metric_readers=[*readers, otlp], shutdown_on_exit=False)
    state = MetricState()
    instruments = EsperInstruments(meters.get_meter(METER_NAME), RUN_ID, state, lambda: {})
    metrics = EsperMetrics(instruments, state)
    tracers = TracerProvider(sampler=sampler, shutdown_on_exit=False)
    tracers.add_span_processor(SpanMetricsProcessor(metrics))
    yield Telemetry(endpoint, plain, otlp, meters, tracers, metrics)
    tracers.shutdown()
    meters.shutdown()
    endpoint.close()


@pytest.fixture
def sampled() -> Iterator[Telemetry]:
    yield from telemetry(ALWAYS_ON)


@pytest.fixture
def unsampled() -> Iterator[Telemetry]:
    """Every span recorded, none sampled: what sampling.py makes of a DROP."""
    yield from telemetry(AlwaysRecordSampler(ALWAYS_OFF))


def buckets(text: str, family: str) -> list[Sample]:
    """The bucket samples of `family` in an OpenMetrics exposition."""
    (found,) = [item for item in text_string_to_metric_families(text) if item.name == family]
    return [sample for sample in found.samples if sample.name.endswith("_bucket")]


def exemplars(text: str, family: str) -> list[Sample]:
    return [sample for sample in buckets(text, family) if sample.exemplar is not None]


def ids(span: ReadableSpan) -> dict[str, str]:
    assert span.context is not None
    return {
        "trace_id": trace.format_trace_id(span.context.trace_id),
        "span_id": trace.format_span_id(span.context.span_id),
    }


def seconds(span: ReadableSpan) -> float:
    assert span.start_time is not None and span.end_time is not None
    return (span.end_time - span.start_time) / 1e9


def first_bucket_holding(samples: list[Sample], value: float) -> Sample:
    return next(sample for sample in samples if value <= float(sample.labels["le"]))


def test_each_duration_bucket_names_the_span_it_measured(sampled: Telemetry) -> None:
    batch, update = sampled.batch_with_update()

    text = sampled.scrape(OPENMETRICS)

    for family, span in ((BATCH, batch), (UPDATE, update)):
        (sample,) = exemplars(text, family)
        # The update's own span, not its parent batch that was current when it ended.
        assert sample.exemplar is not None and sample.exemplar.labels == ids(span), family
        assert sample.exemplar.value == pytest.approx(seconds(span))
        assert sample == first_bucket_holding(buckets(text, family), seconds(span))
        # Recorded when the span ended: the exemplar's time is no earlier.
        assert span.end_time is not None
        assert float(str(sample.exemplar.timestamp)) >= span.end_time // 1_000_000_000
    assert len([line for line in text.splitlines() if EXEMPLAR.search(line)]) == 2, text


def test_the_epoch_duration_names_the_span_current_where_its_event_was_emitted(
    sampled: Telemetry,
) -> None:
    sink = OpenTelemetrySink(sampled.metrics)
    tracer = sampled.tracers.get_tracer("esper.test")
    with tracer.start_as_current_span(names.EPOCH_SPAN) as epoch:
        sink.emit(TelemetryEvent(EventType.EPOCH_COMPLETED, data={"duration_s": 0.3}))
    assert isinstance(epoch, ReadableSpan)

    (sample,) = exemplars(sampled.scrape(OPENMETRICS), EPOCH)

    assert sample.exemplar is not None and sample.exemplar.labels == ids(epoch)
    assert sample.exemplar.value == 0.3 and sample.labels["le"] == "0.5"


def test_the_exemplars_reach_an_otlp_reader_too(sampled: Telemetry) -> None:
    batch, update = sampled.batch_with_update()

    data = sampled.otlp.get_metrics_data()

    assert data is not None
    points = {
        metric.name: point
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        for point in metric.data.data_points
        if isinstance(point, HistogramDataPoint)
    }
    for name, span in ((names.BATCH_DURATION, batch), (names.UPDATE_DURATION, update)):
        (exemplar,) = points[name].exemplars
        context = span.context
        assert context is not None
        assert (exemplar.trace_id, exemplar.span_id) == (context.trace_id, context.span_id)


def test_a_bucket_keeps_its_latest_exemplar_from_scrape_to_scrape(sampled: Telemetry) -> None:
    first, _ = sampled.batch_with_update()
    # The SDK reports an exemplar in one collection only: the endpoint keeps it.
    for _scrape in range(2):
        (kept,) = exemplars(sampled.scrape(OPENMETRICS), BATCH)
        assert kept.exemplar is not None and kept.exemplar.labels == ids(first)

    second, _ = sampled.batch_with_update()  # as quick: the same bucket
    (latest,) = exemplars(sampled.scrape(OPENMETRICS), BATCH)
    assert latest.exemplar is not None and latest.exemplar.labels == ids(second)
    assert latest.value == 2


def test_spans_that_sampling_dropped_give_no_exemplar(unsampled: Telemetry) -> None:
    tracer = unsampled.tracers.get_tracer("esper.test")
    unsampled.batch_with_update()
    sink = OpenTelemetrySink(unsampled.metrics)
    with tracer.start_as_current_span(names.EPOCH_SPAN):
        sink.emit(TelemetryEvent(EventType.EPOCH_COMPLETED, data={"duration_s": 0.3}))

    text = unsampled.scrape(OPENMETRICS)

    for family in (BATCH, UPDATE, EPOCH):
        counted = buckets(text, family)[-1]
        assert counted.value == 1, family  # measured all the same
        assert exemplars(text, family) == [], family
    assert " # {" not in text


def comparable(text: str) -> list[tuple[str, str, str, str, list[tuple[Any, ...]]]]:
    """The families of an OpenMetrics exposition, exemplars left out."""
    return [
        (
            family.name,
            family.type,
            family.documentation,
            family.unit,
            [(s.name, s.labels, s.value, s.timestamp) for s in family.samples],
        )
        for family in text_string_to_metric_families(text)
    ]


def test_every_series_is_what_the_exporter_alone_serves(sampled: Telemetry) -> None:
    sampled.batch_with_update()
    state = sampled.metrics.state
    state.count_episode()
    state.set_batch_accuracy(71.5)

    openmetrics, text = sampled.scrape(OPENMETRICS), sampled.scrape()
    # The plain reader collects the observable instruments' state as it is now: unchanged.
    plain_text = generate_latest(sampled.plain).decode()
    plain_openmetrics = openmetrics_latest(sampled.plain).decode()

    # The classic text format, byte for byte.
    assert text == plain_text
    assert f"{BATCH}_bucket" in text and "esper_episodes_total" in text
    assert " # {" not in text
    # OpenMetrics: the same families and samples, only the exemplars added.
    assert comparable(openmetrics) == comparable(plain_openmetrics)
    assert " # {" not in plain_openmetrics and len(exemplars(openmetrics, BATCH)) == 1
