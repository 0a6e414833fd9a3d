"""Helpers shared by tests in several directories, imported as `from helpers import ...`
(tests/ is on sys.path: pytest puts it there when it imports tests/conftest.py)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from app.contracts.events import EventType, Severity, TelemetryEvent
from app.training.environment import EpochResult, HostEnvironment
from app.training.environment_batch import EnvironmentBatch
from instrumentation.jsonl_reader import LogLineError, log_files, read_logged_events

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _table_rows(document: str, heading: str) -> list[list[str]]:
    """The cells of every body row of the first table under `## heading`."""
    text = (DOCS / document).read_text(encoding="utf-8")
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return [row for row in rows if row[0].startswith("`")]


@dataclass(frozen=True)
class DocumentedMetric:
    """One metric as docs/opentelemetry.md documents it: its kind and labels besides run_id."""

    kind: str
    labels: frozenset[str]


def documented_metrics() -> dict[str, DocumentedMetric]:
    """The metric table of docs/opentelemetry.md, by Prometheus name."""
    table: dict[str, DocumentedMetric] = {}
    for names, kind, labels, _meaning in _table_rows("opentelemetry.md", "Metrics"):
        documented = DocumentedMetric(kind, frozenset(re.findall(r"`(\w+)`", labels)))
        for name in re.findall(r"`(\w+)`", names):
            table[name] = documented
    return table


# The metric table of docs/opentelemetry.md: Prometheus name -> its labels besides run_id.
METRICS = documented_metrics()
METRIC_TABLE = {name: metric.labels for name, metric in METRICS.items()}
HISTOGRAMS = tuple(name for name, metric in METRICS.items() if metric.kind == "histogram")
PPO_GAUGES = tuple(
    name for name, metric in METRICS.items() if metric.kind == "gauge" and "_ppo_" in name
)


@dataclass(frozen=True)
class DocumentedEvent:
    """One event type as docs/events.md documents it."""

    severity: Severity
    fields: tuple[str, ...]


def documented_events() -> dict[EventType, DocumentedEvent]:
    """The table "Event types and their data" of docs/events.md, by event type."""
    table: dict[EventType, DocumentedEvent] = {}
    for types, severity, fields in _table_rows("events.md", "Event types and their data"):
        documented = DocumentedEvent(Severity(severity), tuple(re.findall(r"`(\w+)`", fields)))
        for name in re.findall(r"`(\w+)`", types):
            table[EventType(name)] = documented
    return table


# The data fields docs/events.md lists for these events.
_DOCUMENTED = documented_events()
PPO_FIELDS = _DOCUMENTED[EventType.PPO_UPDATE_COMPLETED].fields
ANOMALY_FIELDS = _DOCUMENTED[EventType.RATIO_EXPLOSION_DETECTED].fields
PROGRESS_FIELDS = _DOCUMENTED[EventType.PLATEAU_DETECTED].fields
# What SEED_FOSSILIZED and SEED_CULLED share (they add params_added or reason).
SEED_OUTCOME_FIELDS = tuple(
    name
    for name in _DOCUMENTED[EventType.SEED_FOSSILIZED].fields
    if name in _DOCUMENTED[EventType.SEED_CULLED].fields
)


class EventRecorder(list[TelemetryEvent]):
    """An `app.telemetry` event handler that keeps every event it is handed, in order.

    It is the list of those events itself, so tests compare, index and unpack it directly.
    """

    def emit(self, event: TelemetryEvent) -> None:
        self.append(event)

    def of_type(self, event_type: EventType) -> list[TelemetryEvent]:
        """The recorded events of `event_type`, in order."""
        return [event for event in self if event.event_type == event_type]


def read_log(
    path: Path, on_error: Callable[[LogLineError], None] | None = None
) -> list[TelemetryEvent]:
    """The events of a log and its rotated predecessors, oldest first, read as `esper
    replay` reads them; bad lines go to on_error (by default they fail the test)."""

    def fail(error: LogLineError) -> None:
        raise AssertionError(f"unreadable line {error}")

    return [
        logged.event
        for file in log_files(path)
        for logged in read_logged_events(file, on_error or fail)
    ]


def train_alone(env: HostEnvironment) -> Callable[[int], EpochResult]:
    """Starts an episode of `env` in a batch of its own and returns a function that
    trains its next epoch, as the trainer would with one environment."""
    batch = EnvironmentBatch([env])
    return lambda epoch: batch.run_epoch(epoch)[0]


@contextmanager
def count_host_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record every Python-level read of a tensor's value: each is a host sync on a GPU."""
    reads: list[str] = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(
            self: torch.Tensor,
            *args: Any,
            _original: Any = original,
            _name: str = name,
            **kwargs: Any,
        ) -> Any:
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    yield reads
    monkeypatch.undo()
