"""`esper replay`: send a recorded `events.jsonl` log to OpenTelemetry with its original
timestamps, so that an old run (the original system's included) can be looked at in Jaeger.

Trace shape (DESIGN §5, as far as a log allows). The log has no span boundaries, so they
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
- a span starts at its first event and ends at its last (children included), so span
  durations are the spread of the logged events, not the original work's duration; the
  batch and update duration histograms (measured from spans) inherit that.

Span events and metrics are the live sink's own (`OpenTelemetrySink.emit` with the
replayed span current): the exact DESIGN §5 names and attributes, event timestamps from
the log. Metric values reflect the log, but OTLP metric points carry the export time, not
the original one: metrics are exported once, when the replay ends. When a line carries
`trace_id`/`span_id` (logs written by this project), the span its event lands on keeps
the first such pair as `esper.original_trace_id`/`esper.original_span_id`; ids are never
reused, so a replay does not collide with a run that was exported live.

A replay makes spans far faster than training does, and the BatchSpanProcessor drops
spans once its queue is full; so replay waits for each trace's export before the next,
until an export fails (then waiting would make a dead collector cost the export timeout
per trace, and the failures are counted in the summary instead).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Link, Span
from opentelemetry.util.types import AttributeValue

import app
from app.contracts.events import EventType, TelemetryEvent
from instrumentation.jsonl_reader import LoggedEvent, LogLineError, read_logged_events
from instrumentation.jsonl_reader import log_files as log_files  # re-exported for the CLI
from instrumentation.otel.adapter import OpenTelemetrySink, timestamp_ns
from instrumentation.otel.metrics import BATCH_SPAN, EPISODE_SPAN, UPDATE_SPAN
from instrumentation.otel.setup import (
    TRACES_SINK,
    OpenTelemetrySession,
    SignalExport,
    sdk_disabled,
)
from instrumentation.otel.summary import export_line

_log = logging.getLogger(__name__)

RUN_SPAN = "esper.run"
EPOCH_SPAN = "esper.epoch"
RUN_FILE = "run.json"
STANDARD_LOG_NAME = "events.jsonl"
FLUSH_TIMEOUT_MS = 10_000

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
PROGRESS_EVENTS = frozenset(
    {
        EventType.PLATEAU_DETECTED,
        EventType.IMPROVEMENT_DETECTED,
        EventType.DEGRADATION_DETECTED,
    }
)


class ReplayInputError(Exception):
    """The log cannot be read, or there is nowhere to send it; nothing was replayed."""


def check_readable(paths: Iterable[Path]) -> None:
    """Fail before any export if one of the files is missing or cannot be opened."""
    for path in paths:
        try:
            with path.open("rb"):
                pass
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise ReplayInputError(f"cannot read event log {path}: {reason}") from None


def check_destination() -> None:
    """Fail when no exporter is configured: a replay to nowhere would look like success."""
    if sdk_disabled():
        raise ReplayInputError("OTEL_SDK_DISABLED=true: nothing to replay to")
    if not any(SignalExport.from_environment(s).exporters for s in ("traces", "metrics")):
        raise ReplayInputError(
            "no exporter configured: set OTEL_EXPORTER_OTLP_ENDPOINT "
            "(or OTEL_TRACES_EXPORTER=console)"
        )


def run_id_for(path: Path) -> str:
    """The run id of a log: from `run.json` beside it (written by `esper train`), else its
    run directory's name for a standard `events.jsonl`, else the file's stem, so that
    replaying the same log twice gives the same id."""
    run_file = path.parent / RUN_FILE
    if run_file.is_file():
        try:
            run_id = json.loads(run_file.read_text(encoding="utf-8")).get("run_id")
        except (OSError, ValueError, AttributeError) as error:
            _log.warning("ignoring %s: %s", run_file, error)
        else:
            if isinstance(run_id, str) and run_id:
                return run_id
            _log.warning("ignoring %s: no run_id string in it", run_file)
    return path.parent.name if path.name == STANDARD_LOG_NAME else path.stem


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


@dataclass(frozen=True)
class SpanKey:
    """Which replayed span of a batch an event belongs on."""

    name: str
    env_id: int | str | None = None
    epoch: int | None = None

    @property
    def parent(self) -> SpanKey | None:
        if self.name == EPOCH_SPAN:
            return SpanKey(EPISODE_SPAN, self.env_id)
        return None if self.name == BATCH_SPAN else BATCH_KEY

    def attributes(self) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {}
        if self.env_id is not None:
            attributes["esper.env_id"] = self.env_id
        if self.epoch is not None:
            attributes["esper.epoch"] = self.epoch
        return attributes


BATCH_KEY = SpanKey(BATCH_SPAN)
UPDATE_KEY = SpanKey(UPDATE_SPAN)


def span_key(event: TelemetryEvent) -> SpanKey:
    if event.event_type in UPDATE_EVENTS:
        return UPDATE_KEY
    env_id = event.data.get("env_id")
    if isinstance(env_id, bool) or not isinstance(env_id, int | str):
        return BATCH_KEY
    if event.epoch is None:
        return SpanKey(EPISODE_SPAN, env_id)
    return SpanKey(EPOCH_SPAN, env_id, event.epoch)


@dataclass
class SpanPlan:
    """What a replayed span needs before it starts: its time range (its own events and
    its children's) and the original ids of the first event placed directly on it."""

    start_ns: int
    end_ns: int
    original: dict[str, AttributeValue] = field(default_factory=dict)

    def include(self, moment_ns: int) -> None:
        self.start_ns = min(self.start_ns, moment_ns)
        self.end_ns = max(self.end_ns, moment_ns)


def plan_spans(batch: Iterable[LoggedEvent]) -> dict[SpanKey, SpanPlan]:
    plans: dict[SpanKey, SpanPlan] = {}
    for logged in batch:
        moment = timestamp_ns(logged.event.timestamp)
        direct = span_key(logged.event)
        key: SpanKey | None = direct
        while key is not None:
            plans.setdefault(key, SpanPlan(moment, moment)).include(moment)
            key = key.parent
        plan = plans[direct]
        if not plan.original and logged.trace_id and logged.span_id:
            plan.original = {
                "esper.original_trace_id": logged.trace_id,
                "esper.original_span_id": logged.span_id,
            }
    return plans


@dataclass
class ReplayCounts:
    """What the summary reports."""

    run_id: str
    files: int
    events: int = 0
    skipped: int = 0
    traces: int = 0


class LogReplayer:
    """Replays logs into one session's providers; `counts` is up to date at any moment,
    so a summary can still be printed after an interrupt."""

    def __init__(
        self,
        session: OpenTelemetrySession,
        run_id: str,
        files: int,
        on_error: Callable[[LogLineError], None],
    ) -> None:
        if session.tracer_provider is None or session.sink is None:
            raise ReplayInputError("OpenTelemetry is disabled: nothing to replay to")
        self._provider: TracerProvider = session.tracer_provider
        self._sink: OpenTelemetrySink = session.sink
        self._session = session
        self._tracer = self._provider.get_tracer("esper.replay", app.__version__)
        self._on_error = on_error
        self._run_link: Link | None = None
        self._last_batch = 0
        self._episodes_before: int | None = None
        self._wait_for_export = True
        self.counts = ReplayCounts(run_id, files)

    def replay(self, paths: Iterable[Path]) -> None:
        for batch in batches(self._read(paths)):
            self._replay_batch(batch)

    def _read(self, paths: Iterable[Path]) -> Iterator[LoggedEvent]:
        for path in paths:
            yield from read_logged_events(path, self._skip)

    def _skip(self, error: LogLineError) -> None:
        self.counts.skipped += 1
        self._on_error(error)

    def _run_span_link(self, first: TelemetryEvent) -> Link:
        """The short `esper.run` span, at the first event's time, that batches link to."""
        if self._run_link is None:
            moment = timestamp_ns(first.timestamp)
            attributes: dict[str, AttributeValue] = {
                "esper.run_id": self.counts.run_id,
                "esper.replayed": True,
            }
            span = self._tracer.start_span(
                RUN_SPAN, context=Context(), attributes=attributes, start_time=moment
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
            "esper.run_id": self.counts.run_id,
            "esper.batch": self._last_batch,
            "esper.replayed": True,
        }
        if self._episodes_before is not None:
            attributes["esper.episodes_completed"] = self._episodes_before
        episodes = update.data.get("episodes_completed") if update is not None else None
        self._episodes_before = episodes if _is_int(episodes) else None
        return attributes

    def _replay_batch(self, batch: list[LoggedEvent]) -> None:
        link = self._run_span_link(batch[0].event)
        plans = plan_spans(batch)
        root = self._tracer.start_span(
            BATCH_SPAN,
            context=Context(),
            links=[link],
            attributes={**self._batch_attributes(batch), **plans[BATCH_KEY].original},
            start_time=plans[BATCH_KEY].start_ns,
        )
        spans: dict[SpanKey, Span] = {BATCH_KEY: root}
        for logged in batch:
            span = self._span(span_key(logged.event), plans, spans)
            with trace.use_span(span, end_on_exit=False):
                self._sink.emit(logged.event)
            self.counts.events += 1
        # Children were opened after their parents: end them first.
        for key, span in reversed(spans.items()):
            span.end(end_time=plans[key].end_ns)
        self.counts.traces += 1
        self._flush()

    def _span(
        self, key: SpanKey, plans: dict[SpanKey, SpanPlan], spans: dict[SpanKey, Span]
    ) -> Span:
        """The open span for key, opened (with its parents) at its first event's time."""
        if key in spans:
            return spans[key]
        parent = key.parent
        assert parent is not None, "the batch span is opened first"
        span = self._tracer.start_span(
            key.name,
            context=trace.set_span_in_context(self._span(parent, plans, spans)),
            attributes={**key.attributes(), **plans[key].original},
            start_time=plans[key].start_ns,
        )
        spans[key] = span
        return span

    def _flush(self) -> None:
        """Wait for this trace's export while exports succeed (module docstring)."""
        if self._wait_for_export:
            self._provider.force_flush(FLUSH_TIMEOUT_MS)
            self._wait_for_export = not self._session.sink_errors().get(TRACES_SINK, 0)

    def exit_code(self, export_finished: bool) -> int:
        """0 when every line and span got out; 1 when lines were skipped or the export
        did not finish within the shutdown bound."""
        return 0 if self.counts.skipped == 0 and export_finished else 1

    def summary(self, status: str, export_finished: bool, bound_s: float) -> str:
        """The closing report; call it after the session's shutdown, so that the export
        failures it lists are final."""
        counts = self.counts
        lines = [
            f"esper: replay {status}",
            f"  run id:    {counts.run_id}",
            f"  events:    {counts.events} replayed from {counts.files} file(s), "
            f"{counts.skipped} line(s) skipped",
            f"  traces:    {counts.traces} batch trace(s), each linked to the esper.run span",
            export_line(self._session),
        ]
        if not export_finished:
            lines.append(f"  shutdown:  export did not finish within the {bound_s:g}s bound")
        lines.append(f"  in Jaeger: tag esper.run_id={counts.run_id}")
        return "\n".join(lines)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
