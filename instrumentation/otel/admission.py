"""`QueueAdmission`: the gate in front of a batch processor's bounded queue.

The SDK's batch processors (spans and log records share one implementation) drop an
item when their queue is full, logging a warning and counting nothing (their own
metrics are off unless OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED is set). The gate keeps
that from happening: it hands an item over only while fewer than `max_queue_size`
admitted items have not yet reached the exporter, and books the others as lost (queue
full). That count is exact because the batch processor hands every batch it takes from
its queue straight to the exporter, whose counting wrapper books it (`SinkLedger.begin`):
the queue never holds more than the admitted items not yet handed over, so the batch
processor itself never finds it full (`tests/otel/test_export_accounting.py` pins this).
Admission happens under a lock, so concurrent producers cannot both take the last place.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from instrumentation.otel.accounting import QUEUE_FULL, SinkLedger


class QueueAdmission:
    def __init__(self, ledger: SinkLedger, max_queue_size: int, late_reason: str) -> None:
        """`late_reason`: what an item that comes after `close` is booked as lost to."""
        self._ledger = ledger
        self._max_queue_size = max_queue_size
        self._late_reason = late_reason
        self._lock = threading.Lock()
        self._closed = False

    def admit(self, hand_over: Callable[[], None]) -> None:
        """Call `hand_over` (put one item in the queue) if there is room, else book it."""
        with self._lock:
            if self._closed:
                self._ledger.lose(1, self._late_reason)
            elif self._ledger.queued() >= self._max_queue_size:
                self._ledger.lose(1, QUEUE_FULL)
            else:
                self._ledger.admit(1)
                hand_over()

    def close(self) -> None:
        """Shutdown began: nothing is admitted any more."""
        with self._lock:
            self._closed = True
