"""`AccountingLogProcessor`: the SDK's BatchLogRecordProcessor, with every log record
accounted for.

Records enter the batch queue through a `QueueAdmission` (admission.py), which books
those that find it full instead of letting the batch processor drop them unnoticed. The
processor also counts the attributes LogRecordLimits dropped from each record (the SDK
only warns about them), and books records emitted after shutdown began.
"""

from __future__ import annotations

from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter

from instrumentation.otel.accounting import EMITTED_AFTER_SHUTDOWN, LogLimitCounts, SinkLedger
from instrumentation.otel.admission import QueueAdmission
from instrumentation.otel.batching import QueueSettings
from instrumentation.otel.exporters import CountingLogExporter


class AccountingLogProcessor(LogRecordProcessor):
    def __init__(
        self,
        exporter: LogRecordExporter,
        ledger: SinkLedger,
        log_limits: LogLimitCounts | None,
        settings: QueueSettings,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.exporter = CountingLogExporter(exporter, ledger)
        self._log_limits = log_limits
        self._admission = QueueAdmission(ledger, settings.max_queue_size, EMITTED_AFTER_SHUTDOWN)
        self._batch = BatchLogRecordProcessor(
            self.exporter,
            max_queue_size=settings.max_queue_size,
            max_export_batch_size=settings.max_export_batch_size,
            schedule_delay_millis=settings.schedule_delay_ms,
            export_timeout_millis=settings.export_timeout_ms,
            meter_provider=meter_provider,
        )

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        if self._log_limits is not None:
            self._log_limits.count(log_record.dropped_attributes)
        self._admission.admit(lambda: self._batch.on_emit(log_record))

    def shutdown(self) -> None:
        """Export what is queued, then shut the exporter down (the batch processor's
        shutdown does both, on its worker thread)."""
        self._admission.close()
        self._batch.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._batch.force_flush(timeout_millis)
