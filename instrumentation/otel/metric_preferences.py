"""The temporality and aggregation a metric exporter asks its reader for, stated
explicitly so that an exporter wrapper can ask for the same as the exporter it wraps.

A PeriodicExportingMetricReader takes them from the exporter it is given, which for
Esper is a counting wrapper (exporters.py); the SDK has no public accessor for an
exporter's preferences, so the factory decides them and passes the same ones to both.
For OTLP they follow the specification's variables, with the exporters' defaults:

- `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`: `cumulative` (default), `delta`
  or `lowmemory`, case-insensitive;
- `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION`:
  `explicit_bucket_histogram` (default) or `base2_exponential_bucket_histogram`.

An unknown value gets the default; the OTLP exporter, which still reads the variable,
logs a warning about it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION,
    OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
)
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality
from opentelemetry.sdk.metrics.view import (
    Aggregation,
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
)

from instrumentation.otel.environment import variable

_INSTRUMENTS = (
    Counter,
    UpDownCounter,
    Histogram,
    ObservableCounter,
    ObservableUpDownCounter,
    ObservableGauge,
)
_CUMULATIVE = AggregationTemporality.CUMULATIVE
_DELTA = AggregationTemporality.DELTA
# Each preference's temporality of the instrument classes above, in their order.
_TEMPORALITIES = {
    "CUMULATIVE": (_CUMULATIVE,) * len(_INSTRUMENTS),
    "DELTA": (_DELTA, _CUMULATIVE, _DELTA, _DELTA, _CUMULATIVE, _CUMULATIVE),
    "LOWMEMORY": (_DELTA, _CUMULATIVE, _DELTA, _CUMULATIVE, _CUMULATIVE, _CUMULATIVE),
}


@dataclass(frozen=True)
class MetricPreferences:
    """A metric exporter's preferred temporality and aggregation by instrument class;
    None leaves the reader's defaults (cumulative, the instrument's default aggregation)."""

    temporality: dict[type, AggregationTemporality] | None = None
    aggregation: dict[type, Aggregation] | None = None

    @classmethod
    def for_otlp(cls, protocol: str) -> MetricPreferences:
        """What the OTLP metric exporter of `protocol` prefers under the environment."""
        preference = (variable(OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE) or "").upper()
        temporalities = _TEMPORALITIES.get(preference, _TEMPORALITIES["CUMULATIVE"])
        return cls(
            dict(zip(_INSTRUMENTS, temporalities, strict=True)),
            {Histogram: _histogram_aggregation(protocol)},
        )


def _histogram_aggregation(protocol: str) -> Aggregation:
    value = os.environ.get(OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION, "")
    # The HTTP exporter reads the value as the specification says, case-insensitively;
    # the gRPC exporter of this SDK takes it only as written.
    if protocol != "grpc":
        value = value.strip().lower()
    if value == "base2_exponential_bucket_histogram":
        return ExponentialBucketHistogramAggregation()
    return ExplicitBucketHistogramAggregation()
