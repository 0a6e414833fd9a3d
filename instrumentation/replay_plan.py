"""Where `esper replay` puts each event of a batch: the spans, their parts and traces.

A span holds at most `TraceLimits.span_events` events, the tracer provider's span-event
limit (OTEL_SPAN_EVENT_COUNT_LIMIT, 128 by default): the SDK would silently drop the
rest. A span that is full continues in a sibling of the same name and parent, a *part*;
every part of a span that needed more than one carries `esper.replay.part` (1, 2, ...)
and `esper.replay.parts` (how many). New children go under their parent's latest part.

A trace holds at most `TraceLimits.trace_events` events and `trace_spans` spans, so that
a log of tens of thousands of events without a single PPO update (one "batch") still
gives traces Jaeger can show, every trace fits in the BatchSpanProcessor's queue (2048
spans by default; replay flushes after each trace), and its OTLP requests stay near
1 MB, below the 4 MiB a gRPC receiver accepts by default. When the next event would
overflow a trace, or the `esper.batch` root itself is full, the batch continues in a new
trace whose root is the next part of `esper.batch`; a span of the previous trace that
gets more events continues in a new part in the new trace.

Events keep their log order: a batch's traces cover consecutive runs of its events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from opentelemetry.util.types import AttributeValue

from app.contracts import telemetry_names as names
from app.contracts.events import EventType, TelemetryEvent
from instrumentation.jsonl_reader import LoggedEvent
from instrumentation.otel.adapter import timestamp_ns

# About 1 MB of typical events (a seed-lifecycle line is about 260 bytes).
TRACE_EVENTS = 4096
# One export batch of the BatchSpanProcessor (512 by default), a quarter of its queue.
TRACE_SPANS = 512

UPDATE_EVENTS = frozenset(
    {
        EventType.PPO_UPDATE_COMPLETED,
        EventType.RATIO_EXPLOSION_DETECTED,
        EventType.RATIO_COLLAPSE_DETECTED,
        EventType.VALUE_COLLAPSE_DETECTED,
        EventType.GRADIENT_PATHOLOGY_DETECTED,
        EventType.NUMERICAL_INSTABILITY_DETECTED,
    }
)


@dataclass(frozen=True)
class SpanKey:
    """Which replayed span of a batch an event belongs on."""

    name: str
    env_id: int | str | None = None
    epoch: int | None = None

    @property
    def parent(self) -> SpanKey | None:
        if self.name == names.EPOCH_SPAN:
            return SpanKey(names.EPISODE_SPAN, self.env_id)
        return None if self.name == names.BATCH_SPAN else BATCH_KEY

    def attributes(self) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {}
        if self.env_id is not None:
            attributes[names.ENV_ID] = self.env_id
        if self.epoch is not None:
            attributes[names.EPOCH] = self.epoch
        return attributes


BATCH_KEY = SpanKey(names.BATCH_SPAN)
UPDATE_KEY = SpanKey(names.UPDATE_SPAN)


def span_key(event: TelemetryEvent) -> SpanKey:
    """Events with `data.env_id` go on that env's episode, or its epoch when they have
    one; the update and anomaly events on the update span; the rest on the batch."""
    if event.event_type in UPDATE_EVENTS:
        return UPDATE_KEY
    env_id = event.data.get("env_id")
    if isinstance(env_id, bool) or not isinstance(env_id, int | str):
        return BATCH_KEY
    if event.epoch is None:
        return SpanKey(names.EPISODE_SPAN, env_id)
    return SpanKey(names.EPOCH_SPAN, env_id, event.epoch)


@dataclass(frozen=True)
class TraceLimits:
    """How much one replayed span and one trace may hold; None: no limit on span events."""

    span_events: int | None
    trace_events: int = TRACE_EVENTS
    trace_spans: int = TRACE_SPANS

    def __post_init__(self) -> None:
        if self.span_events is not None and self.span_events < 1:
            raise ValueError("a span must be able to hold an event")
        # A new trace must take any event: its root, an episode and an epoch.
        if self.trace_events < 1 or self.trace_spans < 3:
            raise ValueError("a trace must be able to hold an event and its spans")


@dataclass(eq=False)
class PlannedSpan:
    """One span to replay: its events (in log order) and its time range, which spans its
    own events and its children's."""

    key: SpanKey
    parent: PlannedSpan | None
    part: int
    start_ns: int
    end_ns: int
    events: list[LoggedEvent] = field(default_factory=list)
    parts: int = 1
    original: dict[str, AttributeValue] = field(default_factory=dict)

    def add(self, logged: LoggedEvent, moment_ns: int) -> None:
        self.events.append(logged)
        if not self.original and logged.trace_id and logged.span_id:
            self.original = {
                names.ORIGINAL_TRACE_ID: logged.trace_id,
                names.ORIGINAL_SPAN_ID: logged.span_id,
            }
        span: PlannedSpan | None = self
        while span is not None:
            span.start_ns = min(span.start_ns, moment_ns)
            span.end_ns = max(span.end_ns, moment_ns)
            span = span.parent

    def attributes(self) -> dict[str, AttributeValue]:
        """The key's attributes, the original ids, and the part when there are several."""
        attributes = {**self.key.attributes(), **self.original}
        if self.parts > 1:
            attributes[names.REPLAY_PART] = self.part
            attributes[names.REPLAY_PARTS] = self.parts
        return attributes


@dataclass
class TracePlan:
    """One trace: its spans in the order to start them (parents first, the root first)
    and its events in log order, each with the span it goes on."""

    spans: list[PlannedSpan]
    events: list[tuple[LoggedEvent, PlannedSpan]] = field(default_factory=list)

    @property
    def root(self) -> PlannedSpan:
        return self.spans[0]


def plan_batch(batch: Iterable[LoggedEvent], limits: TraceLimits) -> list[TracePlan]:
    """The traces of one batch (see the module docstring), in order."""
    planner = _Planner(limits)
    for logged in batch:
        planner.add(logged)
    return planner.finish()


class _Planner:
    def __init__(self, limits: TraceLimits) -> None:
        self._limits = limits
        self._traces: list[TracePlan] = []
        self._open: dict[SpanKey, PlannedSpan] = {}
        self._parts: dict[SpanKey, list[PlannedSpan]] = {}

    def add(self, logged: LoggedEvent) -> None:
        key = span_key(logged.event)
        moment = timestamp_ns(logged.event.timestamp)
        if not self._fits(key):
            self._new_trace(moment)
        span = self._open.get(key)
        if span is None or self._full(span):
            span = self._new_span(key, moment)
        span.add(logged, moment)
        self._traces[-1].events.append((logged, span))

    def finish(self) -> list[TracePlan]:
        for parts in self._parts.values():
            for span in parts:
                span.parts = len(parts)
        return self._traces

    def _full(self, span: PlannedSpan) -> bool:
        limit = self._limits.span_events
        return limit is not None and len(span.events) >= limit

    def _fits(self, key: SpanKey) -> bool:
        """Whether an event on key fits in the current trace."""
        if not self._traces:
            return False
        trace = self._traces[-1]
        if len(trace.events) >= self._limits.trace_events:
            return False
        needed = 0
        span = self._open.get(key)
        if span is not None and not self._full(span):
            return True
        # A new part of key, and its ancestors that have no span yet: a full ancestor
        # still takes children. The root is never missing; a full root ends the trace.
        ancestor: SpanKey | None = key
        while ancestor is not None and (ancestor == key or ancestor not in self._open):
            if ancestor == BATCH_KEY:
                return False
            needed += 1
            ancestor = ancestor.parent
        return len(trace.spans) + needed <= self._limits.trace_spans

    def _new_trace(self, moment_ns: int) -> None:
        self._open = {}
        self._traces.append(TracePlan([]))
        self._new_span(BATCH_KEY, moment_ns)

    def _new_span(self, key: SpanKey, moment_ns: int) -> PlannedSpan:
        """The next part of key in the current trace, under its parent's open part
        (opened first if the trace has none yet)."""
        parent_key = key.parent
        parent = None
        if parent_key is not None:
            parent = self._open.get(parent_key) or self._new_span(parent_key, moment_ns)
        parts = self._parts.setdefault(key, [])
        span = PlannedSpan(key, parent, len(parts) + 1, moment_ns, moment_ns)
        parts.append(span)
        self._open[key] = span
        self._traces[-1].spans.append(span)
        return span
