"""Reads an `events.jsonl` log back into events, reporting corrupt lines without stopping.

Replay and report read logs written by this project and by the original system
(`tests/fixtures/` keeps one). A line that is not JSON, not an object, or not a valid event is
reported with its line number and skipped; every other line still comes out. The
strings "NaN", "Infinity" and "-Infinity" stay strings, so a round trip is lossless;
bare NaN/Infinity tokens, which a non-strict writer may have produced, read as floats.
`trace_id` and `span_id` are not part of an event; `read_logged_events` keeps them beside
it for replay, `read_events` drops them.

A log may be a rotated set (`JsonlSink(max_bytes=...)`, or logrotate): `log_files` is the one
place that knows its order, and `read_log_set` / `read_logged_log_set` read the whole set
as one log. When rotation kept a bounded number of files, the set starts with the oldest
line still kept, not with the run's first event.
"""

from __future__ import annotations

import glob
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app.contracts.events import TelemetryEvent

_log = logging.getLogger(__name__)

_ROTATED = re.compile(r"\.(\d+)")


@dataclass(frozen=True)
class LogLineError:
    """A line of a log that could not be read as an event, and why."""

    path: Path
    line_number: int
    problem: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line_number}: {self.problem}"


def _log_warning(error: LogLineError) -> None:
    _log.warning("skipping unreadable event line %s", error)


@dataclass(frozen=True)
class LoggedEvent:
    """An event with the ids of the span that held it when it was logged, if any."""

    event: TelemetryEvent
    trace_id: str | None = None
    span_id: str | None = None


def read_events(
    path: Path, on_error: Callable[[LogLineError], None] = _log_warning
) -> Iterator[TelemetryEvent]:
    """Yield the events of the log in file order; bad lines go to on_error, then skipped.

    Blank lines are ignored. The default on_error logs a warning, so nothing is dropped
    silently.
    """
    for logged in read_logged_events(path, on_error):
        yield logged.event


def read_logged_events(
    path: Path, on_error: Callable[[LogLineError], None] = _log_warning
) -> Iterator[LoggedEvent]:
    """Like `read_events`, with each line's `trace_id` and `span_id` (None when absent or
    not strings)."""
    with path.open("rb") as lines:
        for line_number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                logged = _parse(raw)
            except ValueError as exc:
                on_error(LogLineError(path, line_number, str(exc)))
                continue
            yield logged


def log_files(path: Path) -> list[Path]:
    """The log and its rotated predecessors beside it, oldest first.

    A rotated set is `events.jsonl.N`, ..., `events.jsonl.1`, `events.jsonl`, the highest
    number the oldest (as logrotate numbers them); gaps in the numbering are allowed.
    """
    rotated = []
    for sibling in path.parent.glob(f"{glob.escape(path.name)}.*"):
        match = _ROTATED.fullmatch(sibling.name[len(path.name) :])
        if match:
            rotated.append((int(match[1]), sibling))
    return [sibling for _, sibling in sorted(rotated, reverse=True)] + [path]


def read_log_set(
    path: Path, on_error: Callable[[LogLineError], None] = _log_warning
) -> Iterator[TelemetryEvent]:
    """Yield the events of the log and its rotated predecessors (`log_files`), oldest first.

    Lines dropped by rotation (beyond its `keep`) are gone: the set begins where the oldest
    kept file begins. Bad lines go to on_error with their own file's path and line number.
    """
    for logged in read_logged_log_set(path, on_error):
        yield logged.event


def read_logged_log_set(
    path: Path, on_error: Callable[[LogLineError], None] = _log_warning
) -> Iterator[LoggedEvent]:
    """Like `read_log_set`, with each line's `trace_id` and `span_id`."""
    for file in log_files(path):
        yield from read_logged_events(file, on_error)


def _parse(raw: bytes) -> LoggedEvent:
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid UTF-8: {exc.reason}") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    try:
        event = TelemetryEvent.from_record(record)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid event: {exc}") from None
    return LoggedEvent(event, _text(record.get("trace_id")), _text(record.get("span_id")))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
