"""The telemetry hub: fans every domain event out to the sinks, isolating their failures.

Installed as the handler behind `app.telemetry.emit`. Telemetry must never break
training, so an exception raised by a sink is caught here, counted per sink (exported
later as `esper_telemetry_sink_errors_total`, together with what a sink dropped on its
own) and logged without flooding the log.
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
from instrumentation.sinks.base import TelemetrySink

_log = logging.getLogger(__name__)


class TelemetryHub:
    """Delivers each event to every sink in order; implements `app.telemetry.EventHandler`.

    A re-entrant lock serialises deliveries: events may come from the training thread and,
    at shutdown, from code running on the stack of a signal handler, and a sink that emits
    while handling an event must not deadlock.
    """

    def __init__(self, sinks: Sequence[TelemetrySink] = ()) -> None:
        self._lock = threading.RLock()
        self._sinks: list[TelemetrySink] = list(sinks)
        self._sink_errors: Counter[str] = Counter()
        self._events_by_type: Counter[EventType] = Counter()
        self._emitted = 0
        self._closed = False

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
            self._sinks.append(sink)

    def emit(self, event: TelemetryEvent) -> None:
        """Hand the event to every sink; a no-op once the hub is closed."""
        with self._lock:
            if self._closed:
                return
            self._emitted += 1
            self._events_by_type[event.event_type] += 1
            # The loop of `_each_sink` written out: this runs for every event on the
            # training thread, and a closure per event is a cost with nothing to show.
            for sink in self._sinks:
                try:
                    sink.emit(event)
                except Exception:
                    self._record_failure(sink.name, "emit")

    def flush(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._each_sink("flush", lambda sink: sink.flush())

    def close(self) -> None:
        """Close every sink once, even when some fail; later calls do nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._each_sink("close", lambda sink: sink.close())

    def _each_sink(self, operation: str, call: Callable[[TelemetrySink], None]) -> None:
        for sink in self._sinks:
            try:
                call(sink)
            except Exception:
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
