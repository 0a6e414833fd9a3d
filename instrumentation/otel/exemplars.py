"""Exemplars on the `--prometheus-port` histograms: each bucket of the duration histograms
points at the trace and span of a measurement that fell in it (Grafana's exemplar link).

The OpenTelemetry Prometheus exporter translates every metric to prometheus_client
families but drops the exemplars of histogram points. Rather than translate anew,
`ExemplarPrometheusReader` keeps that translation and adds what it drops:

- It is the exporter's reader, registered on a registry of its own that nobody serves.
  On each scrape the served registry asks `ExemplarCollector`, which collects that
  registry (the reader collects the SDK, the exporter translates) and hands the families
  on, with an exemplar on each histogram bucket that has one.
- The exemplars are taken from the collected points on their way to the exporter
  (`_receive_metrics`, the hook every MetricReader implements). The SDK reports an
  exemplar once, in the collection after its measurement, while Prometheus may scrape
  any number of times (and so may a person with curl): `BucketExemplars` keeps the
  latest of each bucket until a newer one replaces it, as prometheus_client's own
  histograms do.
- Exemplars are written only in the OpenMetrics format, which prometheus_client chooses
  from the scrape's Accept header (Prometheus asks for it); the classic text format of
  the same families has none, so it is what the exporter alone serves.

Which measurements get an exemplar is the SDK's exemplar filter: by default
(`OTEL_METRICS_EXEMPLAR_FILTER=trace_based`) only those recorded in the context of a
sampled span, the spans a trace backend receives. An exemplar without trace and span
ids (filter `always_on` outside any span) is left out: it has nothing to point at.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from json import dumps
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader

# The exporter's naming rules, so that an OpenTelemetry metric and data point find
# their Prometheus family and series. `_mapping` is a private module of the exporter,
# used because these are exactly the functions its translation applies (no public
# equivalent exists); should it move, this import fails and with it `serve_prometheus`,
# loudly, rather than the exemplars going missing in silence.
from opentelemetry.exporter.prometheus._mapping import (
    map_unit,
    sanitize_attribute,
    sanitize_full_name,
)
from opentelemetry.sdk.metrics.export import Histogram, Metric, MetricsData
from opentelemetry.trace import format_span_id, format_trace_id
from opentelemetry.util.types import Attributes
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.metrics_core import Metric as Family
from prometheus_client.samples import Exemplar, Sample, Timestamp

# The exemplar labels Grafana's trace link reads (lowercase hex, 32 and 16 digits).
TRACE_ID_LABEL = "trace_id"
SPAN_ID_LABEL = "span_id"

# A series of a family: its labels but `le`, sorted.
Series = tuple[tuple[str, str], ...]


def family_name(metric: Metric) -> str:
    """The Prometheus name the exporter gives `metric`: sanitized, its unit appended by
    prometheus_client (e.g. `esper.batch.duration`, "s" -> `esper_batch_duration_seconds`)."""
    name = sanitize_full_name(metric.name)
    return HistogramMetricFamily(name, "", unit=map_unit(metric.unit or "")).name


def series_of(attributes: Attributes) -> Series:
    """The labels the exporter makes of a point's attributes (no scope or resource
    labels: `ExemplarPrometheusReader` turns them off)."""
    items = (attributes or {}).items()
    return tuple(sorted((sanitize_attribute(key), label_value(value)) for key, value in items))


def label_value(value: object) -> str:
    """A label value as the exporter writes it: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else dumps(value, default=str)


class BucketExemplars:
    """The latest exemplar of every histogram bucket: taken from collected points,
    attached to the translated families' bucket samples.

    Locked: a collection outside a scrape (`MeterProvider.force_flush`) updates it on
    another thread.
    """

    def __init__(self) -> None:
        # family name -> bucket upper bound -> series -> exemplar (by bound first: most
        # buckets have none, and a bound is quicker to look up than a series).
        self._latest: dict[str, dict[float, dict[Series, Exemplar]]] = {}
        self._lock = threading.Lock()

    def update(self, metrics_data: MetricsData) -> None:
        with self._lock:
            for resource_metrics in metrics_data.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        if isinstance(metric.data, Histogram):
                            self._update_histogram(metric, metric.data)

    def _update_histogram(self, metric: Metric, data: Histogram) -> None:
        buckets: dict[float, dict[Series, Exemplar]] | None = None
        for point in data.data_points:
            if not point.exemplars:
                continue
            if buckets is None:
                buckets = self._latest.setdefault(family_name(metric), {})
            series = series_of(point.attributes)
            bounds = point.explicit_bounds
            for exemplar in point.exemplars:
                if exemplar.trace_id is None or exemplar.span_id is None:
                    continue
                # The bucket the SDK counted the value in: the first bound not below it.
                index = bisect_left(bounds, exemplar.value)
                bound = bounds[index] if index < len(bounds) else float("inf")
                nanoseconds = exemplar.time_unix_nano
                buckets.setdefault(float(bound), {})[series] = Exemplar(
                    {
                        TRACE_ID_LABEL: format_trace_id(exemplar.trace_id),
                        SPAN_ID_LABEL: format_span_id(exemplar.span_id),
                    },
                    exemplar.value,
                    Timestamp(nanoseconds // 1_000_000_000, nanoseconds % 1_000_000_000),
                )

    def attach(self, family: Family) -> Family:
        """`family` with the exemplars of its buckets (the same object, samples replaced)."""
        if family.type != "histogram":
            return family
        with self._lock:
            buckets = self._latest.get(family.name)
            if buckets:
                family.samples = [self._attached(sample, buckets) for sample in family.samples]
        return family

    @staticmethod
    def _attached(sample: Sample, buckets: Mapping[float, Mapping[Series, Exemplar]]) -> Sample:
        if not sample.name.endswith("_bucket"):
            return sample
        labels = dict(sample.labels)
        # Bounds compared as numbers: "+Inf" and "1.0" are how the exporter spells them.
        by_series = buckets.get(float(labels.pop("le")))
        exemplar = None if by_series is None else by_series.get(tuple(sorted(labels.items())))
        return sample if exemplar is None else sample._replace(exemplar=exemplar)


class ExemplarCollector:
    """A prometheus_client collector: the families of the exporter's registry, with
    exemplars on the histogram buckets.

    Scrapes are served on threads of their own; one at a time goes through the reader's
    collection and the translation, so that the exemplars attached are those of the
    points translated, and concurrent scrapes do not share the exporter's queue of
    collected data (each would translate the other's).
    """

    def __init__(self, translated: CollectorRegistry, exemplars: BucketExemplars) -> None:
        self._translated = translated
        self._exemplars = exemplars
        self._lock = threading.Lock()

    def collect(self) -> Iterable[Family]:
        with self._lock:
            return [self._exemplars.attach(family) for family in self._translated.collect()]


class ExemplarPrometheusReader(PrometheusMetricReader):
    """The exporter's PrometheusMetricReader, serving its families on `registry` through
    an ExemplarCollector (module docstring).

    Scope labels off: the series carry exactly the labels of docs/opentelemetry.md's
    table (and `series_of` relies on there being no others).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        translated = CollectorRegistry()
        super().__init__(scope_info_enabled=False, registry=translated)
        self._exemplars = BucketExemplars()
        self._served = registry
        self._bridge = ExemplarCollector(translated, self._exemplars)
        registry.register(self._bridge)

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        if metrics_data is not None:
            self._exemplars.update(metrics_data)
        super()._receive_metrics(metrics_data, timeout_millis, **kwargs)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        super().shutdown(timeout_millis, **kwargs)
        self._served.unregister(self._bridge)
