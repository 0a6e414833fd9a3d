"""The OTLP exporters of the configured protocol (traces, metrics, logs), and the wrappers
that book every export in a `SinkLedger`, with the failure's reason.

They also own the inner exporter's shutdown, so that nothing reaches it after:

- an export requested after shutdown is booked as lost to the shutdown and not passed
  on (the SDK's exporters would log "Exporter already shutdown, ignoring batch", which a
  metric reader's last collection used to print after the run's summary);
- a shutdown requested while an export is in flight waits for that export to end (the
  SDK's processors shut their exporter down when their own wait times out, which would
  abort the export and log about it at an arbitrary moment); `abandon`, called when the
  session's bound is reached and the ledger closed, shuts it down at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from instrumentation.otel import failures
from instrumentation.otel.accounting import SHUTDOWN_BOUND, SinkLedger, export_failed
from instrumentation.otel.environment import SignalExport
from instrumentation.otel.metric_preferences import MetricPreferences
from instrumentation.otel.redaction import redact

_log = logging.getLogger(__name__)


class ExportGuard:
    """Books one exporter's exports and decides when its inner exporter shuts down."""

    def __init__(self, ledger: SinkLedger, shutdown_inner: Callable[[], None]) -> None:
        self.ledger = ledger
        self._shutdown_inner = shutdown_inner
        self._lock = threading.Lock()
        self._in_flight = 0
        self._shutdown_requested = False
        self._inner_shut_down = False

    def run(self, items: int, export: Callable[[], bool]) -> bool:
        """Call export (True on success) unless shut down; book its outcome."""
        with self._lock:
            if self._shutdown_requested:
                if self.ledger.begin(items):
                    self.ledger.finish(items, SHUTDOWN_BOUND)
                return False
            if not self.ledger.begin(items):
                return False
            self._in_flight += 1
        reason: str | None = None
        try:
            with failures.attempt(self.ledger) as attempt:
                try:
                    succeeded = export()
                except Exception as error:
                    reason = export_failed(redact(f"{type(error).__name__}: {error}"))
                    if not self.ledger.closed:  # else abandoned: the summary counted it
                        _log.warning("%s export raised %s", self.ledger.sink, reason)
                else:
                    reason = None if succeeded else attempt.failure_reason()
        finally:
            self.ledger.finish(items, reason)
            with self._lock:
                self._in_flight -= 1
                shut_now = self._take_shutdown(self._shutdown_requested and not self._in_flight)
            if shut_now:
                self._shutdown_inner()
        return reason is None

    def request_shutdown(self) -> None:
        with self._lock:
            self._shutdown_requested = True
            shut_now = self._take_shutdown(not self._in_flight)
        if shut_now:
            self._shutdown_inner()

    def abandon(self) -> None:
        """The bound is reached: shut the inner exporter down now, interrupting retries."""
        with self._lock:
            self._shutdown_requested = True
            shut_now = self._take_shutdown(True)
        if shut_now:
            self._shutdown_inner()

    def _take_shutdown(self, due: bool) -> bool:
        if due and not self._inner_shut_down:
            self._inner_shut_down = True
            return True
        return False


class CountingSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, ledger: SinkLedger) -> None:
        self._inner = inner
        self.guard = ExportGuard(ledger, inner.shutdown)
        failures.watch(inner)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        sent = self.guard.run(
            len(spans), lambda: self._inner.export(spans) is SpanExportResult.SUCCESS
        )
        return SpanExportResult.SUCCESS if sent else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.guard.request_shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingLogExporter(LogRecordExporter):
    def __init__(self, inner: LogRecordExporter, ledger: SinkLedger) -> None:
        self._inner = inner
        self.guard = ExportGuard(ledger, inner.shutdown)
        failures.watch(inner)

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        def send() -> bool:
            return self._inner.export(batch) is LogRecordExportResult.SUCCESS

        sent = self.guard.run(len(batch), send)
        return LogRecordExportResult.SUCCESS if sent else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        self.guard.request_shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingMetricExporter(MetricExporter):
    """Books each metric export (one collection of every instrument) as one item.

    `preferences` must be those `inner` was built with: the reader takes them from this
    wrapper (metric_preferences.py).
    """

    def __init__(
        self, inner: MetricExporter, ledger: SinkLedger, preferences: MetricPreferences
    ) -> None:
        super().__init__(
            preferred_temporality=preferences.temporality,
            preferred_aggregation=preferences.aggregation,
        )
        self._inner = inner
        self.guard = ExportGuard(ledger, inner.shutdown)
        failures.watch(inner)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        def send() -> bool:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
            return result is MetricExportResult.SUCCESS

        self.guard.ledger.admit(1)
        sent = self.guard.run(1, send)
        return MetricExportResult.SUCCESS if sent else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.guard.request_shutdown()


def otlp_span_exporter(export: SignalExport) -> SpanExporter:
    """The OTLP span exporter for the configured protocol; endpoint and headers come
    from the environment, read by the exporter."""
    if export.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter(timeout=export.timeout_s)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter(timeout=export.timeout_s, session=failures.http_session("traces"))


def otlp_metric_exporter(export: SignalExport, preferences: MetricPreferences) -> MetricExporter:
    """The OTLP metric exporter for the configured protocol, built with `preferences`
    (`MetricPreferences.for_otlp(export.protocol)`)."""
    if export.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter(
            timeout=export.timeout_s,
            preferred_temporality=preferences.temporality,
            preferred_aggregation=preferences.aggregation,
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter(
        timeout=export.timeout_s,
        session=failures.http_session("metrics"),
        preferred_temporality=preferences.temporality,
        preferred_aggregation=preferences.aggregation,
    )


def otlp_log_exporter(export: SignalExport) -> LogRecordExporter:
    """The OTLP log record exporter for the configured protocol."""
    if export.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
            OTLPLogExporter as GrpcLogExporter,
        )

        return GrpcLogExporter(timeout=export.timeout_s)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import (
        OTLPLogExporter as HttpLogExporter,
    )

    return HttpLogExporter(timeout=export.timeout_s, session=failures.http_session("logs"))
