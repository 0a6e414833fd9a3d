"""The JSONL event log, byte-compatible with the original system's `events.jsonl` (DESIGN §4).

Each run writes `<telemetry_dir>/telemetry_YYYY-MM-DD_HHMMSS/events.jsonl` (UTC), one
strict-JSON object per line, keys in `RECORD_KEYS` order, then `trace_id` and `span_id`
when an OpenTelemetry span was recording.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.contracts.events import TelemetryEvent

# Returns the lowercase hex (trace_id, span_id) of the span recording now, or None.
SpanIdsProvider = Callable[[], tuple[str, str] | None]

EVENTS_FILE_NAME = "events.jsonl"

# Large enough that the byte buffer never fills before `buffer_events` lines do, so the
# file grows only when the sink asks it to.
_WRITE_BUFFER_BYTES = 1 << 20


def create_run_directory(telemetry_dir: Path, started: datetime) -> Path:
    """Create and return a fresh `telemetry_<UTC time>` directory under telemetry_dir.

    Two runs started in the same second get `_1`, `_2`... suffixes instead of sharing a
    directory; `mkdir` without exist_ok makes the choice safe between processes too.
    """
    telemetry_dir.mkdir(parents=True, exist_ok=True)
    base = f"telemetry_{started.astimezone(UTC):%Y-%m-%d_%H%M%S}"
    suffix = 0
    while True:
        candidate = telemetry_dir / (base if suffix == 0 else f"{base}_{suffix}")
        try:
            candidate.mkdir()
        except FileExistsError:
            suffix += 1
        else:
            return candidate


def to_strict_json(value: object) -> Any:
    """Return value as plain JSON data with no NaN or Infinity left in it.

    Non-finite floats become the strings "NaN", "Infinity" and "-Infinity" (the log is
    strict JSON, DESIGN §4). Numbers of other types (numpy scalars register as
    `numbers.Real`) become int or float; tuples become lists; dict keys become strings.
    Any other object is written as `str(obj)`: losing its type is better than losing
    the event, and the log stays readable.
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _non_finite_name(value)
    if isinstance(value, dict):
        return {
            key if isinstance(key, str) else str(key): to_strict_json(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [to_strict_json(item) for item in value]
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return to_strict_json(float(value))
    return str(value)


def _non_finite_name(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


class JsonlSink:
    """Writes every event as one line of the run's `events.jsonl`.

    Lines are buffered in memory (the io layer's buffer) and reach the file when
    `buffer_events` of them have accumulated, on `flush()` and on `close()`. Each write
    holds whole lines, and the buffer's bookkeeping happens inside one C call, so an
    exception raised by a signal handler (SIGTERM, Ctrl-C) between two statements can
    neither drop nor duplicate a line: closing the sink from a `finally` writes all.
    """

    name = "jsonl"

    def __init__(
        self,
        telemetry_dir: Path,
        buffer_events: int = 64,
        context_provider: SpanIdsProvider | None = None,
    ) -> None:
        if buffer_events < 1:
            raise ValueError(f"buffer_events must be at least 1, got {buffer_events}")
        self._buffer_events = buffer_events
        self._context_provider = context_provider
        self._path = create_run_directory(telemetry_dir, datetime.now(UTC)) / EVENTS_FILE_NAME
        self._file = self._path.open("xb", buffering=_WRITE_BUFFER_BYTES)
        self._unwritten = 0

    @property
    def path(self) -> Path:
        """The `events.jsonl` this sink writes."""
        return self._path

    def emit(self, event: TelemetryEvent) -> None:
        if self._file.closed:
            raise RuntimeError(f"JSONL sink for {self._path} is closed; event not written")
        self._file.write(self._line(event))
        self._unwritten += 1
        if self._unwritten >= self._buffer_events:
            self.flush()

    def flush(self) -> None:
        if self._file.closed:
            return
        self._file.flush()
        self._unwritten = 0

    def close(self) -> None:
        """Write what is buffered and fsync it, so the log survives a crash after exit."""
        if self._file.closed:
            return
        try:
            self.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()

    def _line(self, event: TelemetryEvent) -> bytes:
        record = event.to_record()
        ids = self._context_provider() if self._context_provider is not None else None
        if ids is not None:
            record["trace_id"], record["span_id"] = ids
        text = json.dumps(to_strict_json(record), allow_nan=False)
        return (text + "\n").encode("ascii")
