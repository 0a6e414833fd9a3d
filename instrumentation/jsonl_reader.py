"""Reads an `events.jsonl` log back into events, reporting corrupt lines without stopping.

Replay and report read logs written by this project and by the original system
(`shared/fixtures/`). A line that is not JSON, not an object, or not a valid event is
reported with its line number and skipped; every other line still comes out. The
strings "NaN", "Infinity" and "-Infinity" stay strings, so a round trip is lossless;
bare NaN/Infinity tokens, which a non-strict writer may have produced, read as floats.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app.contracts.events import TelemetryEvent

_log = logging.getLogger(__name__)


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


def read_events(
    path: Path, on_error: Callable[[LogLineError], None] = _log_warning
) -> Iterator[TelemetryEvent]:
    """Yield the events of the log in file order; bad lines go to on_error, then skipped.

    Blank lines are ignored. The default on_error logs a warning, so nothing is dropped
    silently. `trace_id` and `span_id`, when present, are not part of the event and are
    ignored.
    """
    with path.open("rb") as lines:
        for line_number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                event = _parse(raw)
            except ValueError as exc:
                on_error(LogLineError(path, line_number, str(exc)))
                continue
            yield event


def _parse(raw: bytes) -> TelemetryEvent:
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid UTF-8: {exc.reason}") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    try:
        return TelemetryEvent.from_record(record)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid event: {exc}") from None
