"""What became of every span, log record and metric export: sent, or lost and why.

Each exporter has a `SinkLedger` under its sink label (`otlp_traces`, `otlp_metrics`,
`otlp_logs`, `console_traces`, `console_metrics`, `console_logs`). Items move through it
in one direction:

    admitted --(handed to the exporter)--> in flight --> sent | lost (export failed: ...)
    refused: lost (queue full, ended or emitted after shutdown)

Spans are admitted when they end and log records when they are emitted, entering their
batch queue; a metric export is admitted when the reader hands it over. When the
session's shutdown bound is reached, `close` books what is still queued or in flight as
lost to the bound, and the ledger is frozen: a late result of an abandoned export
changes nothing, so the summary printed right after stays true. Limit drops (events,
attributes, links the SDK discarded because of `SpanLimits`; attributes it discarded
from log records because of `LogRecordLimits`) are counted apart: they are parts of
spans and records, not whole ones.

`ExportAccounts.counts()` feeds `esper_telemetry_sink_errors_total`: items lost per sink
label, every configured exporter reported from zero, plus `sink="span_limits"` and
`sink="log_limits"` while spans or log records are exported.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from opentelemetry.sdk.trace import ReadableSpan

Signal = Literal["traces", "metrics", "logs"]
Unit = Literal["span", "export", "record"]
_UNITS: dict[Signal, Unit] = {"traces": "span", "metrics": "export", "logs": "record"}

QUEUE_FULL = "queue full"
SHUTDOWN_BOUND = "shutdown bound reached"
CUT_SHORT = "export cut short by a signal"
ENDED_AFTER_SHUTDOWN = "ended after shutdown"
EMITTED_AFTER_SHUTDOWN = "emitted after shutdown"
SPAN_LIMITS_SINK, LOG_LIMITS_SINK = "span_limits", "log_limits"
# The exporters' sink labels.
TRACES_SINK, METRICS_SINK, LOGS_SINK = "otlp_traces", "otlp_metrics", "otlp_logs"
CONSOLE_TRACES_SINK, CONSOLE_METRICS_SINK = "console_traces", "console_metrics"
CONSOLE_LOGS_SINK = "console_logs"


def export_failed(status: str) -> str:
    """The loss reason of a failed export; `status` as the exporter reported it."""
    return f"export failed: {status}"


@dataclass(frozen=True)
class SinkReport:
    """One exporter's totals at the time of the report."""

    sink: str
    signal: Signal
    unit: Unit
    sent: int
    lost: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SpanLimitReport:
    """Parts of exported spans that SpanLimits made the SDK drop."""

    events: int = 0
    attributes: int = 0
    links: int = 0

    @property
    def total(self) -> int:
        return self.events + self.attributes + self.links


@dataclass(frozen=True)
class ExportReport:
    sinks: tuple[SinkReport, ...] = ()
    span_limits: SpanLimitReport = SpanLimitReport()
    # Attributes that LogRecordLimits made the SDK drop from exported log records.
    log_attributes: int = 0


class SinkLedger:
    """The counts of one exporter; every method is thread-safe."""

    def __init__(self, sink: str, signal: Signal, unit: Unit) -> None:
        self.sink = sink
        self.signal = signal
        self.unit = unit
        self._lock = threading.Lock()
        self._admitted = 0
        self._handed = 0
        self._in_flight = 0
        self._sent = 0
        self._lost: Counter[str] = Counter()
        self._final_export_pending = False
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def queued(self) -> int:
        """Items admitted but not yet handed to the exporter."""
        with self._lock:
            return self._admitted - self._handed

    def admit(self, items: int) -> None:
        with self._lock:
            if not self._closed:
                self._admitted += items

    def lose(self, items: int, reason: str) -> None:
        with self._lock:
            if not self._closed:
                self._lost[reason] += items

    def begin(self, items: int) -> bool:
        """Items handed to the exporter; False once closed (the caller must not export)."""
        with self._lock:
            if self._closed:
                return False
            self._handed += items
            self._in_flight += items
            self._final_export_pending = False
            return True

    def finish(self, items: int, reason: str | None) -> None:
        """An export begun with `begin` ended: sent when reason is None, else lost."""
        with self._lock:
            if self._closed:
                return
            self._in_flight -= items
            if reason is None:
                self._sent += items
            else:
                self._lost[reason] += items

    def expect_final_export(self) -> None:
        """Shutdown started: one last export is due (a metric reader's last collection);
        it is lost to the bound if it has not begun when the ledger closes."""
        with self._lock:
            self._final_export_pending = True

    def close(self, reason: str = SHUTDOWN_BOUND) -> None:
        """Book what is queued, in flight or still due as lost for `reason`, then freeze
        the counts."""
        with self._lock:
            if self._closed:
                return
            left = self._admitted - self._handed + self._in_flight
            left += 1 if self._final_export_pending else 0
            if left:
                self._lost[reason] += left
            self._closed = True

    def lost_total(self) -> int:
        with self._lock:
            return sum(self._lost.values())

    def report(self) -> SinkReport:
        with self._lock:
            return SinkReport(self.sink, self.signal, self.unit, self._sent, dict(self._lost))


class SpanLimitCounts:
    """Events, attributes and links that SpanLimits dropped from exported spans."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events = 0
        self._attributes = 0
        self._links = 0

    def count(self, span: ReadableSpan) -> None:
        attributes = span.dropped_attributes + sum(
            event.dropped_attributes for event in span.events
        )
        events, links = span.dropped_events, span.dropped_links
        if events or attributes or links:
            with self._lock:
                self._events += events
                self._attributes += attributes
                self._links += links

    def report(self) -> SpanLimitReport:
        with self._lock:
            return SpanLimitReport(self._events, self._attributes, self._links)


class LogLimitCounts:
    """Attributes that LogRecordLimits dropped from emitted log records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attributes = 0

    def count(self, dropped_attributes: int) -> None:
        if dropped_attributes:
            with self._lock:
                self._attributes += dropped_attributes

    def total(self) -> int:
        with self._lock:
            return self._attributes


class ExportAccounts:
    """Every ledger of one session, and its span- and log-limit counts."""

    def __init__(self) -> None:
        self._ledgers: list[SinkLedger] = []
        self._on_close: list[Callable[[], None]] = []
        self.span_limits = SpanLimitCounts()
        self.log_limits = LogLimitCounts()

    def ledger(self, sink: str, signal: Signal) -> SinkLedger:
        ledger = SinkLedger(sink, signal, _UNITS[signal])
        self._ledgers.append(ledger)
        return ledger

    def shutdown_started(self) -> None:
        for ledger in self._ledgers:
            if ledger.signal == "metrics":
                ledger.expect_final_export()

    def when_closed(self, callback: Callable[[], None]) -> None:
        """Call callback after the ledgers are closed (to abandon exports in flight)."""
        self._on_close.append(callback)

    def close(self, reason: str = SHUTDOWN_BOUND) -> None:
        """Book what is left as lost for `reason` and freeze every ledger."""
        for ledger in self._ledgers:
            ledger.close(reason)
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback()

    def counts(self) -> dict[str, int]:
        """Items lost by sink label, for esper_telemetry_sink_errors_total."""
        counts = {ledger.sink: ledger.lost_total() for ledger in self._ledgers}
        signals = {ledger.signal for ledger in self._ledgers}
        if "traces" in signals:
            counts[SPAN_LIMITS_SINK] = self.span_limits.report().total
        if "logs" in signals:
            counts[LOG_LIMITS_SINK] = self.log_limits.total()
        return counts

    def report(self) -> ExportReport:
        return ExportReport(
            tuple(ledger.report() for ledger in self._ledgers),
            self.span_limits.report(),
            self.log_limits.total(),
        )
