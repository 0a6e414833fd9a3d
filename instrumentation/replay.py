"""`esper replay`: send a recorded run's event log to OpenTelemetry with its original
timestamps, so that an old run (the original system's included) can be looked at in Jaeger.

What is read: a run directory or a log file, with rotated files and, for a run of
several processes, every rank's log (`replay_input.replay_log_sets`). The ranks' logs are
replayed as one log, merged in timestamp order (`jsonl_reader.read_run_events`), so each
batch's events from every rank come before rank 0's PPO_UPDATE_COMPLETED that closes it.

Trace shape (docs/opentelemetry.md, as far as a log allows). The log has no span boundaries, so they
are rebuilt from the events:

- one short `esper.run` span at the first event's time, carrying `esper.run_id` and
  `esper.replayed=true`;
- one trace per PPO batch: a batch ends with its PPO_UPDATE_COMPLETED and the progress
  events about that batch that follow it (the live trainer emits them after the update,
  still inside the batch); what follows the last update is a partial batch, a trace of
  its own. Each `esper.batch` root links to the run span and carries `esper.run_id`,
  `esper.batch` (the update's `batch`, else one more than the previous batch) and
  `esper.replayed`;
- events with `data.env_id` go under that env's `esper.episode`, and under its
  `esper.epoch` span when the event has an `epoch`; PPO_UPDATE_COMPLETED and the anomaly
  events go on `esper.ppo.update`; everything else on `esper.batch`. The original
  system's seed-lifecycle events carry no epoch, so they land on the episode span.
- no span holds more events than the SDK keeps (its span-event limit,
  OTEL_SPAN_EVENT_COUNT_LIMIT): a full span continues in a sibling part, and a batch too
  large for one trace continues in further traces, each linked to the part before
  (`replay_plan.py`). Every event is recorded on a span; the summary counts what the SDK
  actually kept, and says so (exit 1) if an event was ever dropped or sampled out.
- a span starts at its first event and ends at its last (children included), so span
  durations are the spread of the logged events, not the original work's duration; the
  batch and update duration histograms (measured from spans, first parts only) inherit
  that.

Span events, log records and metrics are the live sink's own (`OpenTelemetrySink.emit`
with the replayed span current): the exact names and attributes of
docs/opentelemetry.md, event timestamps from the log, and each log record carries the
trace and span id of the replayed span its span event is on (log records go out only
when a log exporter is configured: OTEL_LOGS_EXPORTER, or an OTLP endpoint). Metric
values reflect the log, but OTLP metric points carry the export time, not the original
one: metrics are exported once, when the replay ends. When a line carries
`trace_id`/`span_id` (logs written by this project), the span its event lands on keeps
the first such pair as `esper.original_trace_id`/`esper.original_span_id`; ids are never
reused, so a replay does not collide with a run that was exported live.

A replay makes spans and records far faster than training does, and the batch processors
drop them once their queue is full; so replay waits for each trace's export (its spans
and its log records) before the next, until an export fails (then waiting would make a
dead collector cost the export timeout per trace, and the failures are counted in the
summary instead).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.trace import Link, Span
from opentelemetry.util.types import AttributeValue

import app
from app.contracts import telemetry_names as names
from app.contracts.events import EventType, TelemetryEvent
from instrumentation.jsonl_reader import LoggedEvent, LogLineError, read_run_events
from instrumentation.otel.accounting import LOGS_SINK, TRACES_SINK
from instrumentation.otel.adapter import OpenTelemetrySink, timestamp_ns
from instrumentation.otel.session import OpenTelemetrySession
from instrumentation.otel.summary import export_line
from instrumentation.replay_input import ReplayInputError
from instrumentation.replay_plan import (
    PlannedSpan,
    TraceLimits,
    TracePlan,
    plan_batch,
)

FLUSH_TIMEOUT_MS = 10_000

PROGRESS_EVENTS = frozenset(
    {
        EventType.PLATEAU_DETECTED,
        EventType.IMPROVEMENT_DETECTED,
        EventType.DEGRADATION_DETECTED,
    }
)


def batches(events: Iterable[LoggedEvent]) -> Iterator[list[LoggedEvent]]:
    """Split a log into PPO batches (see the module docstring), in order."""
    batch: list[LoggedEvent] = []
    update: TelemetryEvent | None = None
    for logged in events:
        if update is not None and not _reports_on(logged.event, update):
            yield batch
            batch, update = [], None
        batch.append(logged)
        if logged.event.event_type is EventType.PPO_UPDATE_COMPLETED:
            update = logged.event
    if batch:
        yield batch


def _reports_on(event: TelemetryEvent, update: TelemetryEvent) -> bool:
    """Whether event is a progress event about the batch that `update` closed."""
    batch = update.data.get("batch")
    return (
        event.event_type in PROGRESS_EVENTS
        and batch is not None
        and event.data.get("batch") == batch
    )


@dataclass
class ReplayCounts:
    """What the summary reports. `events` counts only events recorded on a span: those
    the SDK dropped anyway (over its span-event limit) or that went on a span the
    sampler did not record are counted apart."""

    run_id: str
    files: int
    ranks: int = 1
    events: int = 0
    skipped: int = 0
    dropped: int = 0
    unsampled: int = 0
    traces: int = 0
    batches: int = 0
    split_spans: int = 0

    @property
    def lost(self) -> int:
        return self.dropped + self.unsampled


class LogReplayer:
    """Replays a run's log sets (`replay_log_sets`) into one session's providers; `counts`
    is up to date at any moment, so a summary can still be printed after an interrupt."""

    def __init__(
        self,
        session: OpenTelemetrySession,
        run_id: str,
        log_sets: Sequence[Sequence[Path]],
        on_error: Callable[[LogLineError], None],
    ) -> None:
        if session.tracer_provider is None or session.span_limits is None or session.sink is None:
            raise ReplayInputError("OpenTelemetry is disabled: nothing to replay to")
        self._provider: TracerProvider = session.tracer_provider
        self._limits = _trace_limits(session.span_limits)
        self._sink: OpenTelemetrySink = session.sink
        self._session = session
        self._tracer = self._provider.get_tracer("esper.replay", app.__version__)
        self._on_error = on_error
        self._run_link: Link | None = None
        self._last_batch = 0
        self._episodes_before: int | None = None
        self._wait_for_export = True
        self._log_sets = log_sets
        self.counts = ReplayCounts(run_id, sum(map(len, log_sets)), len(log_sets))

    def replay(self) -> None:
        for batch in batches(read_run_events(self._log_sets, self._skip)):
            self._replay_batch(batch)

    def _skip(self, error: LogLineError) -> None:
        self.counts.skipped += 1
        self._on_error(error)

    def _run_span_link(self, first: TelemetryEvent) -> Link:
        """The short `esper.run` span, at the first event's time, that batches link to."""
        if self._run_link is None:
            moment = timestamp_ns(first.timestamp)
            attributes: dict[str, AttributeValue] = {
                names.RUN_ID: self.counts.run_id,
                names.REPLAYED: True,
            }
            span = self._tracer.start_span(
                names.RUN_SPAN, context=Context(), attributes=attributes, start_time=moment
            )
            span.end(end_time=moment)
            self._run_link = Link(span.get_span_context())
        return self._run_link

    def _batch_attributes(self, batch: list[LoggedEvent]) -> dict[str, AttributeValue]:
        update = next(
            (
                logged.event
                for logged in batch
                if logged.event.event_type is EventType.PPO_UPDATE_COMPLETED
            ),
            None,
        )
        number = update.data.get("batch") if update is not None else None
        self._last_batch = number if _is_int(number) else self._last_batch + 1
        attributes: dict[str, AttributeValue] = {
            names.RUN_ID: self.counts.run_id,
            names.BATCH: self._last_batch,
            names.REPLAYED: True,
        }
        if self._episodes_before is not None:
            attributes[names.EPISODES_COMPLETED] = self._episodes_before
        episodes = update.data.get("episodes_completed") if update is not None else None
        self._episodes_before = episodes if _is_int(episodes) else None
        return attributes

    def _replay_batch(self, batch: list[LoggedEvent]) -> None:
        links = [self._run_span_link(batch[0].event)]
        attributes = self._batch_attributes(batch)
        plans = plan_batch(batch, self._limits)
        for plan in plans:
            root = self._replay_trace(plan, attributes, links)
            # A later part of the batch also links to the part before it.
            links = [links[0], Link(root.get_span_context())]
        self.counts.batches += 1
        self.counts.split_spans += sum(
            span.parts > 1 and span.part == 1 for plan in plans for span in plan.spans
        )

    def _replay_trace(
        self, plan: TracePlan, batch_attributes: dict[str, AttributeValue], links: list[Link]
    ) -> Span:
        """Start the trace's spans, emit its events on them, end them; its root span."""
        spans = self._start_spans(plan, batch_attributes, links)
        emitted = 0
        for logged, planned in plan.events:
            span = spans[planned]
            # Every span records (metrics must not depend on sampling); only a sampled
            # one is exported, and only it holds span events.
            if span.get_span_context().trace_flags.sampled:
                emitted += 1
            else:
                self.counts.unsampled += 1
            with trace.use_span(span, end_on_exit=False):
                self._sink.emit(logged.event)
        # Children were started after their parents: end them first.
        for planned, span in reversed(spans.items()):
            span.end(end_time=planned.end_ns)
        # What the SDK kept is what counts; the plan should leave it nothing to drop.
        dropped = sum(
            span.dropped_events for span in spans.values() if isinstance(span, ReadableSpan)
        )
        self.counts.dropped += dropped
        self.counts.events += emitted - dropped
        self.counts.traces += 1
        self._flush()
        return spans[plan.root]

    def _start_spans(
        self, plan: TracePlan, batch_attributes: dict[str, AttributeValue], links: list[Link]
    ) -> dict[PlannedSpan, Span]:
        """The trace's spans, started parents first; only the root has links."""
        spans: dict[PlannedSpan, Span] = {}
        for planned in plan.spans:
            attributes = planned.attributes()
            if planned.parent is None:
                context, own_links = Context(), links
                attributes = {**batch_attributes, **attributes}
            else:
                context, own_links = trace.set_span_in_context(spans[planned.parent]), []
            spans[planned] = self._tracer.start_span(
                planned.key.name,
                context=context,
                links=own_links,
                attributes=attributes,
                start_time=planned.start_ns,
            )
        return spans

    def _flush(self) -> None:
        """Wait for this trace's export while exports succeed (module docstring)."""
        if self._wait_for_export:
            self._session.force_flush(FLUSH_TIMEOUT_MS)
            errors = self._session.sink_errors()
            self._wait_for_export = not (errors.get(TRACES_SINK, 0) or errors.get(LOGS_SINK, 0))

    def exit_code(self, export_finished: bool) -> int:
        """0 when every line was recorded on a span and exported; 1 when lines were
        skipped, events were not recorded, or the export did not finish within the
        shutdown bound."""
        complete = self.counts.skipped == 0 and self.counts.lost == 0
        return 0 if complete and export_finished else 1

    def summary(self, status: str, export_finished: bool, bound_s: float) -> str:
        """The closing report; call it after the session's shutdown, so that the export
        failures it lists are final."""
        counts = self.counts
        lines = [
            f"esper: replay {status}",
            f"  run id:    {counts.run_id}",
            f"  events:    {counts.events} replayed from {counts.files} file(s), "
            f"{counts.skipped} line(s) skipped",
            *self._rank_lines(),
            f"  traces:    {counts.traces} trace(s) for {counts.batches} batch(es), "
            "each linked to the esper.run span",
            *self._loss_lines(),
            export_line(self._session),
        ]
        if not export_finished:
            lines.append(f"  shutdown:  export did not finish within the {bound_s:g}s bound")
        lines.append(f"  in Jaeger: tag esper.run_id={counts.run_id}")
        return "\n".join(lines)

    def _rank_lines(self) -> list[str]:
        ranks = self.counts.ranks
        return [f"  ranks:     {ranks} ranks' logs, merged in timestamp order"] if ranks > 1 else []

    def _loss_lines(self) -> list[str]:
        counts = self.counts
        lines = []
        if counts.split_spans:
            lines.append(
                f"  spans:     {counts.split_spans} span(s) continued in parts of at most "
                f"{self._limits.span_events} events ({names.REPLAY_PART})"
            )
        if counts.dropped:
            lines.append(
                f"  dropped:   {counts.dropped} event(s) over the span event limit, not recorded"
            )
        if counts.unsampled:
            lines.append(
                f"  unsampled: {counts.unsampled} event(s) on spans the sampler did not "
                "record (OTEL_TRACES_SAMPLER)"
            )
        return lines


def _trace_limits(span_limits: SpanLimits) -> TraceLimits:
    """The session's span-event limit (OTEL_SPAN_EVENT_COUNT_LIMIT, else the SDK's
    default), as its tracer provider enforces it."""
    span_events = span_limits.max_events
    if span_events == 0:
        raise ReplayInputError(
            "OTEL_SPAN_EVENT_COUNT_LIMIT=0: a span can hold no event, nothing would be replayed"
        )
    return TraceLimits(span_events)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
