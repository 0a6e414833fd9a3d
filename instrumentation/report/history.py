"""A run's event stream folded, in one pass, into what the report shows: per-batch series
of the PPO updates, the anomalies at the batch they belong to, the seed swimlane
(`seeds.py`), counts by event type and the facts of the summary.

Memory grows with the run's batches, seeds and distinct anomalies, never with its number
of events: no event is kept once folded. Anomalies (events of severity warning or worse)
are kept once per batch and type, with their count and the first one's detail.

An anomaly belongs to the batch its `data.batch` names; without one, to the batch in
progress when it happened, which is the batch of the next PPO_UPDATE_COMPLETED: the PPO
anomaly detectors report a batch's anomalies just before its update, and host health
checks fire while the batch's episodes run. So such anomalies are held until that update
comes; counting on from the last update would be wrong for a resumed run, whose first
batch is not 1. When no update follows (the run ended mid-batch, or a heuristic or static
controller's log has none), or the update names no batch, they have none (`batch` None):
counted and listed, never drawn on a batch axis.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from app.contracts.events import EventType, Severity, TelemetryEvent
from app.contracts.telemetry_names import PPO_STATISTICS
from instrumentation.jsonl_reader import LoggedEvent, LogLineError
from instrumentation.report.seeds import SeedFold, SeedHistory
from instrumentation.report.values import finite, is_integer

# What PPO_UPDATE_COMPLETED says of its batch: the batch's results and the update's
# statistics.
BATCH_METRICS = ("avg_accuracy", "rolling_avg_accuracy", "avg_reward", *PPO_STATISTICS)
SEVERITY_ORDER = tuple(Severity)
_RANK = {severity: rank for rank, severity in enumerate(SEVERITY_ORDER)}
_ANOMALOUS = frozenset({Severity.WARNING, Severity.ERROR, Severity.CRITICAL})
_DETAIL_CHARS = 300
_EXAMPLES = 5


@dataclass
class BatchSeries:
    """One entry per PPO update, in log order: its batch and the values of BATCH_METRICS
    (None where the update has no finite number for one)."""

    batches: list[int] = field(default_factory=list)
    values: dict[str, list[float | None]] = field(
        default_factory=lambda: {name: [] for name in BATCH_METRICS}
    )

    def last(self, name: str) -> float | None:
        return next((value for value in reversed(self.values[name]) if value is not None), None)


@dataclass
class AnomalyMark:
    """The anomalies of one type in one batch (None: in no known batch): how many, and
    the first one's detail and position in the log (1 for its first event)."""

    batch: int | None
    event_type: str
    severity: Severity
    count: int
    detail: str
    position: int


@dataclass
class RunHistory:
    """Everything the report draws, folded from the run's events."""

    events: int = 0
    first: datetime | None = None
    last: datetime | None = None
    ranks: set[int | None] = field(default_factory=set)
    by_type: Counter[str] = field(default_factory=Counter)
    type_severity: dict[str, Severity] = field(default_factory=dict)
    batches: BatchSeries = field(default_factory=BatchSeries)
    anomalies: dict[tuple[int | None, str], AnomalyMark] = field(default_factory=dict)
    anomaly_counts: Counter[str] = field(default_factory=Counter)
    seeds: SeedHistory = field(default_factory=SeedHistory)
    unreadable: int = 0
    unreadable_examples: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


class HistoryFold:
    """Folds events given one at a time (`add`) into a RunHistory (`finish`); unreadable
    lines are counted by `on_error`, the callback `read_run_events` takes."""

    def __init__(self, episode_epochs: int | None = None) -> None:
        self.history = RunHistory()
        self._seeds = SeedFold(self.history.skipped, episode_epochs)
        # Anomalies without a batch, by (None, type), until the next update gives them one.
        self._held: dict[tuple[int | None, str], AnomalyMark] = {}

    def on_error(self, error: LogLineError) -> None:
        self.history.unreadable += 1
        if len(self.history.unreadable_examples) < _EXAMPLES:
            self.history.unreadable_examples.append(str(error))

    def add(self, logged: LoggedEvent) -> None:
        event = logged.event
        self._count(event)
        self.history.ranks.add(logged.rank)
        if event.event_type is EventType.PPO_UPDATE_COMPLETED:
            self._update(event)
        elif event.severity in _ANOMALOUS:
            self._anomaly(event)
        self._seeds.add(event)

    def finish(self) -> RunHistory:
        self._release(None)
        self.history.seeds = self._seeds.finish()
        return self.history

    def _count(self, event: TelemetryEvent) -> None:
        """The event in the totals: by type, each type's worst severity, the time span."""
        history = self.history
        history.events += 1
        if history.first is None or event.timestamp < history.first:
            history.first = event.timestamp
        if history.last is None or event.timestamp > history.last:
            history.last = event.timestamp
        name = event.event_type.value
        history.by_type[name] += 1
        known = history.type_severity.get(name)
        if known is None or _RANK[event.severity] > _RANK[known]:
            history.type_severity[name] = event.severity

    def _update(self, event: TelemetryEvent) -> None:
        batch = event.data.get("batch")
        if not is_integer(batch):
            self._release(None)
            self.history.skipped["batches: PPO_UPDATE_COMPLETED without an integer batch"] += 1
            return
        self._release(batch)
        series = self.history.batches
        series.batches.append(batch)
        for name, values in series.values.items():
            values.append(finite(event.data.get(name)))

    def _anomaly(self, event: TelemetryEvent) -> None:
        name = event.event_type.value
        self.history.anomaly_counts[name] += 1
        batch = event.data.get("batch")
        named = batch if is_integer(batch) else None
        marks = self._held if named is None else self.history.anomalies
        mark = marks.get((named, name))
        if mark is None:
            position = self.history.events
            mark = AnomalyMark(named, name, event.severity, 0, _detail(event), position)
            marks[(named, name)] = mark
        mark.count += 1

    def _release(self, batch: int | None) -> None:
        """The held anomalies given batch, merged with those that named it."""
        for (_, name), held in self._held.items():
            mark = self.history.anomalies.get((batch, name))
            if mark is None:
                held.batch = batch
                self.history.anomalies[(batch, name)] = held
                continue
            mark.count += held.count
            if held.position < mark.position:
                mark.detail, mark.position = held.detail, held.position
        self._held.clear()


def anomaly_label(event_type: str) -> str:
    """RATIO_EXPLOSION_DETECTED as `ratio explosion`."""
    return event_type.removesuffix("_DETECTED").replace("_", " ").lower()


def fold(events: Iterable[LoggedEvent], folder: HistoryFold) -> RunHistory:
    """Every event of the stream folded by folder."""
    for logged in events:
        folder.add(logged)
    return folder.finish()


def _detail(event: TelemetryEvent) -> str:
    """What the anomaly was, in the event's own words: its `detail`, else its `kind`,
    else its message."""
    for candidate in (event.data.get("detail"), event.data.get("kind"), event.message):
        if isinstance(candidate, str) and candidate:
            return candidate[:_DETAIL_CHARS]
    return ""
