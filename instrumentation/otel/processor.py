"""`AccountingSpanProcessor`: the SDK's BatchSpanProcessor, with every span accounted for.

Sampled spans enter the batch queue through a `QueueAdmission` (admission.py), which
books those that find it full instead of letting the batch processor drop them
unnoticed. The processor also counts what SpanLimits dropped from each exported span,
and books spans that end after shutdown began (the batch processor would ignore them
silently).
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from instrumentation.otel.accounting import ENDED_AFTER_SHUTDOWN, SinkLedger, SpanLimitCounts
from instrumentation.otel.admission import QueueAdmission
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
        self._span_limits = span_limits
        self._admission = QueueAdmission(ledger, settings.max_queue_size, ENDED_AFTER_SHUTDOWN)
        self._batch = BatchSpanProcessor(
            self.exporter,
            max_queue_size=settings.max_queue_size,
            max_export_batch_size=settings.max_export_batch_size,
            schedule_delay_millis=settings.schedule_delay_ms,
            export_timeout_millis=settings.export_timeout_ms,
            meter_provider=meter_provider,
        )

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        if self._span_limits is not None:
            self._span_limits.count(span)
        self._admission.admit(lambda: self._batch.on_end(span))

    def shutdown(self) -> None:
        """Export what is queued, then shut the exporter down (the batch processor's
        shutdown does both, on its worker thread)."""
        self._admission.close()
        self._batch.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._batch.force_flush(timeout_millis)
