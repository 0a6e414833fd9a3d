"""The JSONL event log, byte-compatible with the original system's `events.jsonl` (docs/events.md).

Each run writes `<telemetry_dir>/telemetry_YYYY-MM-DD_HHMMSS/events.jsonl` (UTC), one
strict-JSON object per line, keys in `RECORD_KEYS` order, then `trace_id` and `span_id`
when an OpenTelemetry span was recording.

With `max_bytes` set the log rotates as logrotate numbers it: `events.jsonl` is always the
newest file, `events.jsonl.1` the one before it, up to `events.jsonl.<keep>`, the oldest
kept. Rotation happens between lines, never inside one, so every file is strict JSONL on
its own, and `instrumentation.jsonl_reader.read_log_set` reads the set back in order. With
`keep` bounded, the oldest lines are deliberately dropped once more than `keep` rotated
files would exist: that is the point of the bound, and the price of it.
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
    strict JSON, docs/events.md). Numbers of other types (numpy scalars register as
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

    With `max_bytes`, a line that would make `events.jsonl` larger than max_bytes (counting
    the lines still buffered) first rotates it: the file is flushed, fsynced and renamed to
    `events.jsonl.1` (the older ones shift up by one, and the one that would become
    `events.jsonl.<keep + 1>` is deleted, its events lost by design), then the line starts a
    fresh `events.jsonl`. A line longer than max_bytes is never split: it goes alone into
    a file of its own. keep=N keeps at most N rotated files beside `events.jsonl`.
    """

    name = "jsonl"

    def __init__(
        self,
        telemetry_dir: Path,
        buffer_events: int = 64,
        context_provider: SpanIdsProvider | None = None,
        max_bytes: int | None = None,
        keep: int = 5,
    ) -> None:
        if buffer_events < 1:
            raise ValueError(f"buffer_events must be at least 1, got {buffer_events}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self._max_bytes = max_bytes
        self._keep = keep
        self._buffer_events = buffer_events
        self._context_provider = context_provider
        self._path = create_run_directory(telemetry_dir, datetime.now(UTC)) / EVENTS_FILE_NAME
        self._file = self._path.open("xb", buffering=_WRITE_BUFFER_BYTES)
        self._unwritten = 0
        # Bytes of events.jsonl, the lines still in the write buffer included.
        self._size = 0

    @property
    def path(self) -> Path:
        """The `events.jsonl` this sink writes."""
        return self._path

    def emit(self, event: TelemetryEvent) -> None:
        if self._file.closed:
            raise RuntimeError(f"JSONL sink for {self._path} is closed; event not written")
        line = self._line(event)
        if (
            self._max_bytes is not None
            and self._size > 0
            and self._size + len(line) > self._max_bytes
        ):
            self._rotate()
        self._file.write(line)
        self._size += len(line)
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

    def _rotate(self) -> None:
        """Move events.jsonl to events.jsonl.1 (shifting the older ones) and start afresh.

        The old file stays the sink's file until the new one is open: an interrupt in
        between leaves every written line in some file of the set, and close() still
        writes what is buffered (though `events.jsonl` itself may then be missing, the
        newest lines being in `events.jsonl.1`).
        """
        self.flush()
        os.fsync(self._file.fileno())
        rotated = [self._path.with_name(f"{self._path.name}.{n}") for n in range(self._keep + 1)]
        rotated[self._keep].unlink(missing_ok=True)
        for number in range(self._keep - 1, 0, -1):
            if rotated[number].exists():
                rotated[number].replace(rotated[number + 1])
        self._path.replace(rotated[1])
        fresh = self._path.open("xb", buffering=_WRITE_BUFFER_BYTES)
        old, self._file = self._file, fresh
        self._size = 0
        old.close()

    def _line(self, event: TelemetryEvent) -> bytes:
        record = event.to_record()
        ids = self._context_provider() if self._context_provider is not None else None
        if ids is not None:
            record["trace_id"], record["span_id"] = ids
        text = json.dumps(to_strict_json(record), allow_nan=False)
        return (text + "\n").encode("ascii")
