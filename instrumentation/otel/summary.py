"""The `export:` line of a run's summary (`esper train`, `esper replay`), and where the
run's telemetry went over OTLP, for the summary's links (`otlp_targets`).

    export:    traces 812 spans sent, 96 lost (export failed: UNAVAILABLE);
               logs 2040 records sent, none lost;
               metrics 3 exports sent, 1 lost (export failed: HTTP 503)

one part per exporter (on one line), losses by reason; span-limit drops follow the
traces part, log-record-limit drops the logs part. Without any exporter: `none
configured (JSONL and console only)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from opentelemetry.sdk.resources import SERVICE_NAME

from app.plurals import counted
from instrumentation.otel.accounting import (
    METRICS_SINK,
    TRACES_SINK,
    ExportReport,
    SinkReport,
    SpanLimitReport,
)
from instrumentation.otel.session import OpenTelemetrySession

LABEL = "  export:    "


class ExportSource(Protocol):
    """What the line is built from: an OpenTelemetrySession."""

    @property
    def prometheus_port(self) -> int | None: ...

    def export_report(self) -> ExportReport: ...


def export_line(session: ExportSource) -> str:
    """The summary line; call it after the session's shutdown, when the counts are final."""
    return LABEL + export_summary(session.export_report(), session.prometheus_port is not None)


_SIGNAL_ORDER = {"traces": 0, "logs": 1, "metrics": 2}


def export_summary(report: ExportReport, prometheus: bool = False) -> str:
    if not report.sinks:
        served = "; metrics served on /metrics" if prometheus else ""
        return f"none configured (JSONL and console only{served})"
    sinks = sorted(report.sinks, key=lambda sink: (_SIGNAL_ORDER[sink.signal], sink.sink))
    return "; ".join(_sink_part(sink, report) for sink in sinks)


def _sink_part(sink: SinkReport, report: ExportReport) -> str:
    name = sink.signal if sink.sink.startswith("otlp") else f"{sink.signal} to console"
    part = f"{name} {counted(sink.sent, sink.unit)} sent, {_losses(sink.lost)}"
    if sink.signal == "traces" and report.span_limits.total:
        part += f", span limits dropped {_limit_drops(report.span_limits)}"
    if sink.signal == "logs" and report.log_attributes:
        part += f", log record limits dropped {counted(report.log_attributes, 'attribute')}"
    return part


def _losses(lost: Mapping[str, int]) -> str:
    reasons = {reason: count for reason, count in lost.items() if count}
    total = sum(reasons.values())
    if not total:
        return "none lost"
    if len(reasons) == 1:
        return f"{total} lost ({next(iter(reasons))})"
    detail = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    return f"{total} lost ({detail})"


def _limit_drops(limits: SpanLimitReport) -> str:
    parts = [
        counted(count, unit)
        for count, unit in (
            (limits.events, "event"),
            (limits.attributes, "attribute"),
            (limits.links, "link"),
        )
        if count
    ]
    return ", ".join(parts)


@dataclass(frozen=True)
class OtlpTargets:
    """Where a run's telemetry went: its `service.name`, and whether any span and any
    metric export reached an OTLP endpoint (else a collector, Jaeger and Grafana never
    saw them)."""

    service_name: str
    traces: bool
    metrics: bool


def otlp_targets(session: OpenTelemetrySession) -> OtlpTargets:
    """Call it after the session's shutdown, when the counts are final."""
    sent = {sink.sink for sink in session.export_report().sinks if sink.sent}
    provider = session.tracer_provider
    service = "" if provider is None else provider.resource.attributes.get(SERVICE_NAME, "")
    return OtlpTargets(str(service), TRACES_SINK in sent, METRICS_SINK in sent)
