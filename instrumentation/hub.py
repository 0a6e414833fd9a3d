"""The telemetry hub: fans every domain event out to the sinks, isolating their failures.

Installed as the handler behind `app.telemetry.emit`. Telemetry must never break
training, so an exception raised by a sink is caught here, counted per sink (exported
later as `esper_telemetry_sink_errors_total`, together with what a sink dropped on its
own) and logged without flooding the log.

Training pays for an event only what must happen on its own thread: a deferred sink
(`instrumentation.sinks.base.DeferredSink`: the JSONL log, the console, OpenTelemetry)
`capture`s there what only that thread knows, and the hub's delivery thread
(delivery.py) does the rest, in the order the events came: encoding and writing log
lines, console lines, metric updates. `flush` and `close` wait until every event emitted
before them is delivered, so closing the hub still writes out everything. An event's
data is read after `emit` returns, so emitters build it fresh and leave it alone, as a
frozen event invites. At most `max_pending` events wait for delivery: beyond that, `emit`
waits until the delivery thread has caught up, so that a stalled sink costs time, never
memory or events.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType

from app import telemetry
from app.contracts.events import EventType, TelemetryEvent
from instrumentation.delivery import DEFAULT_MAX_PENDING, DeliveryThread
from instrumentation.sinks.base import DeferredSink, TelemetrySink

_log = logging.getLogger(__name__)

# Stands in for what a sink's failed `capture` did not return: it gets no `deliver`.
_FAILED = object()


def _flush(sink: TelemetrySink) -> None:
    sink.flush()


def _close(sink: TelemetrySink) -> None:
    sink.close()


class TelemetryHub:
    """Delivers each event to every sink in order; implements `app.telemetry.EventHandler`.

    A re-entrant lock serialises deliveries: events may come from the training thread and,
    at shutdown, from code running on the stack of a signal handler, and a sink that emits
    while handling an event must not deadlock.
    """

    def __init__(
        self, sinks: Sequence[TelemetrySink] = (), max_pending: int = DEFAULT_MAX_PENDING
    ) -> None:
        self._lock = threading.RLock()
        self._sinks: list[TelemetrySink] = []
        self._deferred: list[DeferredSink] = []
        self._immediate: list[TelemetrySink] = []
        self._delivery = DeliveryThread(
            self._deliver, name="esper-telemetry-delivery", max_pending=max_pending
        )
        for sink in sinks:
            self._add(sink)
        self._sink_errors: Counter[str] = Counter()
        self._events_by_type: Counter[EventType] = Counter()
        self._emitted = 0
        self._closed = False
        self._immediate_closed = False

    @property
    def sinks(self) -> tuple[TelemetrySink, ...]:
        return tuple(self._sinks)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def emitted(self) -> int:
        """How many events the hub accepted (before it was closed)."""
        return self._emitted

    @property
    def events_by_type(self) -> Counter[EventType]:
        """A copy of the per-type event counts, for the run's final summary."""
        with self._lock:
            return Counter(self._events_by_type)

    @property
    def sink_errors(self) -> Mapping[str, int]:
        """A read-only snapshot, by sink name, of how many calls failed in each sink plus
        the items each sink dropped on its own without raising (its `dropped` count, when
        it has one: the JSONL sink's lines lost to a full disk)."""
        with self._lock:
            errors = Counter(self._sink_errors)
            for sink in self._sinks:
                dropped = getattr(sink, "dropped", 0)
                if isinstance(dropped, int) and dropped > 0:
                    errors[sink.name] += dropped
            return MappingProxyType(dict(errors))

    def add_sink(self, sink: TelemetrySink) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"cannot add sink {sink.name!r}: the telemetry hub is closed")
            self._add(sink)

    def _add(self, sink: TelemetrySink) -> None:
        self._sinks.append(sink)
        if isinstance(sink, DeferredSink):
            self._deferred.append(sink)
        else:
            self._immediate.append(sink)

    def emit(self, event: TelemetryEvent) -> None:
        """Hand the event to every sink; a no-op once the hub is closed."""
        with self._lock:
            if self._closed:
                return
            # Plain loops: this runs for every event on the training thread, and a closure
            # per event is a cost with nothing to show.
            for sink in self._immediate:
                try:
                    sink.emit(event)
                except Exception:
                    self._record_failure(sink.name, "emit")
            if not self._deferred:
                self._count(event)
                return
            captured: list[object] = []
            for sink in self._deferred:
                try:
                    captured.append(sink.capture(event))
                except Exception:
                    self._record_failure(sink.name, "emit")
                    captured.append(_FAILED)
            full = self._delivery.put((event, captured))
        if full:
            self._delivery.wait_until_delivered()  # outside the lock: delivery takes it

    def flush(self) -> None:
        """Deliver every event emitted so far, then flush every sink."""
        with self._lock:
            if self._closed:
                return
        self._delivery.call_after_pending(lambda: self._each_sink("flush", _flush))
        with self._lock:
            self._each_sink("flush", _flush, self._immediate)

    def close(self) -> None:
        """Deliver every event emitted so far, then close every sink once, even when some
        fail; later calls do nothing."""
        with self._lock:
            self._closed = True
        # A repeat waits here for the first: a close cut short by an exception still ends
        # with every event delivered and every sink closed.
        self._delivery.stop(lambda: self._each_sink("close", _close, self._deferred))
        with self._lock:
            if self._immediate_closed:
                return
            self._immediate_closed = True
            self._each_sink("close", _close, self._immediate)

    def _count(self, event: TelemetryEvent) -> None:
        self._emitted += 1
        self._events_by_type[event.event_type] += 1

    def _deliver(self, item: tuple[TelemetryEvent, list[object]]) -> None:
        event, captured = item
        with self._lock:
            # Counted here, off the training thread (hashing an enum member is a Python
            # call); the summary reads the counts after `close`, which delivers all.
            self._count(event)
        for sink, capture in zip(self._deferred, captured, strict=True):
            if capture is _FAILED:
                continue  # counted when the capture failed
            try:
                sink.deliver(event, capture)
            except Exception:
                with self._lock:
                    self._record_failure(sink.name, "emit")

    def _each_sink(
        self,
        operation: str,
        call: Callable[[TelemetrySink], None],
        sinks: Sequence[TelemetrySink] | None = None,
    ) -> None:
        for sink in self._deferred if sinks is None else sinks:
            try:
                call(sink)
            except Exception:
                with self._lock:
                    self._record_failure(sink.name, operation)

    def _record_failure(self, name: str, operation: str) -> None:
        self._sink_errors[name] += 1
        if self._sink_errors[name] == 1:
            _log.warning(
                "telemetry sink %r failed in %s; training goes on, later failures of this "
                "sink are logged at DEBUG",
                name,
                operation,
                exc_info=True,
            )
        else:
            _log.debug("telemetry sink %r failed in %s", name, operation, exc_info=True)


@contextmanager
def installed(hub: TelemetryHub) -> Iterator[TelemetryHub]:
    """Route `app.telemetry.emit` to the hub for the block; restore the previous handler
    and close the hub after, even when the block is left by an exception such as
    SystemExit from a SIGTERM handler, so buffered events reach their sinks.
    """
    previous = telemetry.event_handler()
    telemetry.set_event_handler(hub)
    try:
        yield hub
    finally:
        telemetry.set_event_handler(previous)
        hub.close()
