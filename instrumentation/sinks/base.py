"""The interface every telemetry sink implements, modelled on OpenTelemetry's exporters."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from app.contracts.events import TelemetryEvent


class TelemetrySink(Protocol):
    """One destination for domain events; the hub isolates each sink's failures.

    Kept this small so that a new output (an OTel adapter, a test recorder) needs no base
    class: any object with these members can be handed to the hub. A sink that loses
    items without raising (the JSONL log on a full disk) counts them in an int attribute
    `dropped`, which the hub adds to its sink errors.
    """

    @property
    def name(self) -> str:
        """Identifies the sink in log messages and in the sink-error metric's label."""
        ...

    def emit(self, event: TelemetryEvent) -> None:
        """Take one event; may buffer it, and may raise (the hub counts the failure)."""
        ...

    def flush(self) -> None:
        """Push anything buffered to its destination."""
        ...

    def close(self) -> None:
        """Flush and release resources; called once at shutdown, must tolerate a repeat."""
        ...


@runtime_checkable
class DeferredSink(TelemetrySink, Protocol):
    """A sink whose work on an event may run later, on the hub's delivery thread.

    The hub calls `capture` on the emitting thread, for what only that thread knows (the
    current span), and `deliver` with what it returned on the delivery thread, in the
    order the events were emitted; `flush` and `close` run there too. `emit` does both at
    once, for use without a hub.
    """

    def capture(self, event: TelemetryEvent) -> object:
        """What `deliver` needs from the emitting thread; cheap, it runs there."""
        ...

    def deliver(self, event: TelemetryEvent, captured: object) -> None:
        """Do the sink's work on the event, given what `capture` returned."""
        ...
