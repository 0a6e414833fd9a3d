"""`AccountingSpanProcessor`: the SDK's BatchSpanProcessor, with every span accounted for.

The BatchSpanProcessor drops a span when its queue is full, logging a warning and
counting nothing (its own metrics are off unless OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED
is set). This processor stands in front of it and keeps that from happening:
it admits a sampled span only while fewer than `max_queue_size` admitted spans have not
yet been handed to the exporter, and books the others as lost (queue full). That count
is exact because the batch processor hands every batch it takes from its queue straight
to the exporter, where `CountingSpanExporter` counts it: the queue never holds more than
the admitted spans not yet handed over, so the batch processor itself never finds its
queue full (`tests/otel/test_export_accounting.py` pins this). Admission happens under a
lock, so concurrent producers cannot both take the last place.

It also counts what SpanLimits dropped from each exported span, and books spans that
end after shutdown began (the batch processor would ignore them silently).
"""

from __future__ import annotations

import threading

from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from instrumentation.otel.accounting import (
    ENDED_AFTER_SHUTDOWN,
    QUEUE_FULL,
    SinkLedger,
    SpanLimitCounts,
)
from instrumentation.otel.batching import QueueSettings
from instrumentation.otel.exporters import CountingSpanExporter


class AccountingSpanProcessor(SpanProcessor):
    def __init__(
        self,
        exporter: SpanExporter,
        ledger: SinkLedger,
        span_limits: SpanLimitCounts | None,
        settings: QueueSettings,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.exporter = CountingSpanExporter(exporter, ledger)
        self._ledger = ledger
        self._span_limits = span_limits
        self._max_queue_size = settings.max_queue_size
        self._batch = BatchSpanProcessor(
            self.exporter,
            max_queue_size=settings.max_queue_size,
            max_export_batch_size=settings.max_export_batch_size,
            meter_provider=meter_provider,
        )
        self._lock = threading.Lock()
        self._shut_down = False

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        if self._span_limits is not None:
            self._span_limits.count(span)
        with self._lock:
            if self._shut_down:
                self._ledger.lose(1, ENDED_AFTER_SHUTDOWN)
            elif self._ledger.queued() >= self._max_queue_size:
                self._ledger.lose(1, QUEUE_FULL)
            else:
                self._ledger.admit(1)
                self._batch.on_end(span)

    def shutdown(self) -> None:
        """Export what is queued, then shut the exporter down (the batch processor's
        shutdown does both, on its worker thread)."""
        with self._lock:
            self._shut_down = True
        self._batch.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._batch.force_flush(timeout_millis)
