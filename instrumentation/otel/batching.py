"""The batching settings the export accounting depends on, read and checked up front.

- OTEL_BSP_MAX_QUEUE_SIZE (2048) and OTEL_BSP_MAX_EXPORT_BATCH_SIZE (512): the span
  queue's bound and the largest export; OTEL_BLRP_MAX_QUEUE_SIZE and
  OTEL_BLRP_MAX_EXPORT_BATCH_SIZE, the same for log records. The accounting processors
  must know the bound to count queue-full drops, so both are passed to the batch
  processors explicitly. An unset batch size follows a smaller queue (the SDK would
  refuse to start with a batch larger than the queue).
- OTEL_BSP_SCHEDULE_DELAY (5000 ms; OTEL_BLRP_SCHEDULE_DELAY, 1000 ms) and
  OTEL_BSP_EXPORT_TIMEOUT / OTEL_BLRP_EXPORT_TIMEOUT (30000 ms): finite and positive. The
  SDK would raise a bare ValueError for a delay of zero once other exporter threads had
  started, and fall back to its default after a traceback for one that is not a number.
- OTEL_METRIC_EXPORT_INTERVAL (60000 ms): must be finite and positive. The periodic
  reader's last collection at shutdown is its final export; with an infinite interval
  the SDK starts no collecting thread and would export nothing at all.

A bad value is an error naming the variable, rather than the SDK's warning and default
(or, for a batch larger than the queue, its exception).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from instrumentation.otel.environment import positive_number, variable
from instrumentation.otel.errors import TelemetryConfigError

INTERVAL_VARIABLE = "OTEL_METRIC_EXPORT_INTERVAL"
DEFAULT_QUEUE_SIZE = 2048
DEFAULT_BATCH_SIZE = 512
# The SDK's defaults, by processor: spans, log records.
DEFAULT_SCHEDULE_DELAY_MS = {"BSP": 5000.0, "BLRP": 1000.0}
DEFAULT_EXPORT_TIMEOUT_MS = 30_000.0
DEFAULT_INTERVAL_MS = 60_000.0


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    text = variable(name, environ)
    return default if text is None else positive_number(name, text, int, "a whole number")


def _milliseconds(environ: Mapping[str, str], name: str, default: float) -> float:
    text = variable(name, environ)
    if text is None:
        return default
    return positive_number(name, text, float, "a number of milliseconds", finite=True)


@dataclass(frozen=True)
class QueueSettings:
    max_queue_size: int
    max_export_batch_size: int
    schedule_delay_ms: float = DEFAULT_SCHEDULE_DELAY_MS["BSP"]
    export_timeout_ms: float = DEFAULT_EXPORT_TIMEOUT_MS

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] = os.environ, *, processor: Literal["BSP", "BLRP"] = "BSP"
    ) -> QueueSettings:
        """The settings of the span ("BSP") or log record ("BLRP") batch processor."""
        queue_variable = f"OTEL_{processor}_MAX_QUEUE_SIZE"
        batch_variable = f"OTEL_{processor}_MAX_EXPORT_BATCH_SIZE"
        queue = _positive_int(environ, queue_variable, DEFAULT_QUEUE_SIZE)
        batch = _positive_int(environ, batch_variable, min(DEFAULT_BATCH_SIZE, queue))
        if batch > queue:
            raise TelemetryConfigError(
                f"{batch_variable}={batch} is larger than {queue_variable}={queue}"
            )
        delay = _milliseconds(
            environ, f"OTEL_{processor}_SCHEDULE_DELAY", DEFAULT_SCHEDULE_DELAY_MS[processor]
        )
        timeout = _milliseconds(
            environ, f"OTEL_{processor}_EXPORT_TIMEOUT", DEFAULT_EXPORT_TIMEOUT_MS
        )
        return cls(queue, batch, delay, timeout)


def metric_export_interval_ms(environ: Mapping[str, str] = os.environ) -> float:
    text = variable(INTERVAL_VARIABLE, environ)
    if text is None:
        return DEFAULT_INTERVAL_MS
    return positive_number(INTERVAL_VARIABLE, text, float, "a number of milliseconds", finite=True)
