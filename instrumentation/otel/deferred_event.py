"""Span events whose attributes are built when they are exported, not when they happen.

`Span.add_event` flattens and validates every attribute on the calling thread (about
0.8 µs an attribute, 75 attributes for a DEBUG PPO update). A `DeferredSpanEvent` holds
the domain event instead and builds the same `BoundedAttributes`, under the same limits,
the first time anything reads them: the batch span processor's export thread, or the
span-limit accounting. The training thread only appends the event to the span, which must
happen before the span ends, so it cannot move to another thread.

That relies on the SDK span's `_add_event`, the one step of `add_event` after building
the attributes; a span that lacks it gets a plain `add_event`. Domain events are frozen
and their data is built fresh for each event, so reading it later reads the same values.
"""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, SpanLimits
from opentelemetry.util import types

from app.contracts.events import TelemetryEvent
from instrumentation.otel.span_event_attributes import (
    event_attributes,
    event_name,
    timestamp_ns,
)


class DeferredSpanEvent(Event):
    """The span event of a domain event: its name, timestamp and attributes (those of
    `event_attributes`, bounded by `limits`) are worked out on first read.

    The base class's constructor is not called: it only stores the three values this
    class computes, and on the training thread every call costs (see the module doc).
    """

    def __init__(self, event: TelemetryEvent, limits: SpanLimits) -> None:
        self._event = event
        self._limits = limits
        self._built: BoundedAttributes | None = None

    @property
    def name(self) -> str:
        return event_name(self._event)

    @property
    def timestamp(self) -> int:
        return timestamp_ns(self._event.timestamp)

    @property
    def attributes(self) -> types.Attributes:
        return self._bounded()

    @property
    def dropped_attributes(self) -> int:
        return self._bounded().dropped

    def _bounded(self) -> BoundedAttributes:
        # The exporter and the span-limit accounting may both build it at once, on two
        # threads: each builds the same value, and either may be kept.
        built = self._built
        if built is None:
            built = self._built = BoundedAttributes(
                self._limits.max_event_attributes,
                event_attributes(self._event),
                max_value_len=self._limits.max_attribute_length,
                immutable=True,
            )
        return built


def add_deferred_event(span: trace.Span, event: TelemetryEvent, limits: SpanLimits) -> None:
    """Add `event` to `span` as its span event, built when it is read."""
    add: Callable[[Event], None] | None = getattr(span, "_add_event", None)
    if add is not None:
        add(DeferredSpanEvent(event, limits))
    elif span.is_recording():
        span.add_event(
            event_name(event),
            attributes=event_attributes(event),
            timestamp=timestamp_ns(event.timestamp),
        )
