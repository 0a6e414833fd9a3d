"""The JSONL event log, byte-compatible with the original system's `events.jsonl` (docs/events.md).

Each run writes `<telemetry_dir>/telemetry_YYYY-MM-DD_HHMMSS/events.jsonl` (UTC), one
strict-JSON object per line, keys in `RECORD_KEYS` order, then `trace_id` and `span_id`
when an OpenTelemetry span was recording. In a run of several processes rank N > 0 writes
`events-rankN.jsonl` beside it, and every line of every rank carries `rank` after the
contract's keys.

With `max_bytes` set the log rotates as logrotate numbers it: `events.jsonl` is always the
newest file, `events.jsonl.1` the one before it, up to `events.jsonl.<keep>`, the oldest
kept. Rotation happens between lines, never inside one, so every file is strict JSONL on
its own, and `instrumentation.jsonl_reader.log_files` lists the set in order. With
`keep` bounded, the oldest lines are deliberately dropped once more than `keep` rotated
files would exist: that is the point of the bound, and the price of it.

A full disk (or a file size limit) never tears a line: lines the disk refuses wait in
memory, bounded, and are written once space comes back; those that cannot wait are
counted in `JsonlSink.dropped` (see `instrumentation.sinks.line_log`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from app.contracts.events import TelemetryEvent
from instrumentation.sinks.line_log import (
    DEFAULT_MAX_PENDING_BYTES,
    DEFAULT_MAX_PENDING_LINES,
    LineLog,
    check_options,
)
from instrumentation.sinks.run_directory import RunDirectory, create_run_directory
from instrumentation.sinks.strict_json import strict_json_text

# Returns the lowercase hex (trace_id, span_id) of the span recording now, or None.
SpanIdsProvider = Callable[[], tuple[str, str] | None]


@runtime_checkable
class SplitSpanIds(Protocol):
    """A `SpanIdsProvider` that splits its work: `capture` notes the current span on the
    emitting thread, `resolve` makes the ids of what it noted, later, on another."""

    def __call__(self) -> tuple[str, str] | None: ...

    def capture(self) -> object: ...

    def resolve(self, captured: object) -> tuple[str, str] | None: ...


def _as_ids(captured: object) -> tuple[str, str] | None:
    return captured if isinstance(captured, tuple) else None


EVENTS_FILE_NAME = "events.jsonl"


class JsonlSink:
    """Writes every event as one line of the run's `events.jsonl`.

    Lines wait in memory and reach the file when `buffer_events` of them have accumulated,
    on `flush()` and on `close()`; `LineLog` (instrumentation/sinks/line_log.py) writes
    them. A line is in the file whole or not at all, also when the disk is full or a file
    size limit is reached: lines the disk refuses wait (up to `max_pending_lines` and
    `max_pending_bytes`) and are written by a later flush once space comes back; lines
    beyond those bounds, and lines still waiting at `close()`, are lost and counted in
    `dropped`, with the reason in `last_error`. An exception raised by a signal handler
    between two statements (SIGTERM, Ctrl-C) can neither drop nor duplicate a line:
    closing the sink from a `finally` writes all.

    With `max_bytes`, a line that would make `events.jsonl` larger than max_bytes first
    rotates it: the file is fsynced and renamed to `events.jsonl.1` (the older ones shift
    up by one, and the one that would become `events.jsonl.<keep + 1>` is deleted, its
    events lost by design), then the line starts a fresh `events.jsonl`. A line longer
    than max_bytes is never split: it goes alone into a file of its own. keep=N keeps at
    most N rotated files beside `events.jsonl`.
    """

    name = "jsonl"

    def __init__(
        self,
        telemetry_dir: Path,
        buffer_events: int = 64,
        context_provider: SpanIdsProvider | None = None,
        max_bytes: int | None = None,
        keep: int = 5,
        max_pending_lines: int = DEFAULT_MAX_PENDING_LINES,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        *,
        run_directory: RunDirectory | None = None,
        rank: int | None = None,
    ) -> None:
        """`run_directory`: write into this one (another rank's run) instead of creating
        a fresh one under telemetry_dir; `rank`: the process's rank, in a run of
        several."""
        if buffer_events < 1:
            raise ValueError(f"buffer_events must be at least 1, got {buffer_events}")
        check_options(max_bytes, keep, max_pending_lines, max_pending_bytes)
        self._buffer_events = buffer_events
        self._capture: Callable[[], object] | None = context_provider
        self._resolve: Callable[[object], tuple[str, str] | None] = _as_ids
        if isinstance(context_provider, SplitSpanIds):
            self._capture, self._resolve = context_provider.capture, context_provider.resolve
        self._directory = run_directory or create_run_directory(telemetry_dir, datetime.now(UTC))
        self._rank = rank
        self._file_name = EVENTS_FILE_NAME if not rank else f"events-rank{rank}.jsonl"
        try:
            self._log = LineLog(
                self._directory.path / self._file_name,
                max_bytes=max_bytes,
                keep=keep,
                max_pending_lines=max_pending_lines,
                max_pending_bytes=max_pending_bytes,
            )
        except BaseException:
            self._directory.remove()
            raise
        self._unflushed = 0

    @property
    def path(self) -> Path:
        """The `events.jsonl` this sink writes."""
        return self._log.path

    @property
    def dropped(self) -> int:
        """Events lost because the disk refused their lines (see the class docstring)."""
        return self._log.dropped

    @property
    def last_error(self) -> str | None:
        """Why the last write failed, e.g. "No space left on device"; None if none did."""
        return self._log.last_error

    def emit(self, event: TelemetryEvent) -> None:
        self.deliver(event, self.capture(event))

    def capture(self, event: TelemetryEvent) -> object:
        """What the span ids of the line come from: the span current where the event is
        emitted."""
        return self._capture() if self._capture is not None else None

    def deliver(self, event: TelemetryEvent, captured: object) -> None:
        if self._log.closed:
            raise RuntimeError(f"JSONL sink for {self.path} is closed; event not written")
        self._log.append(_line(event, self._rank, self._resolve(captured)))
        self._unflushed += 1
        if self._unflushed >= self._buffer_events:
            self.flush()

    def flush(self) -> None:
        self._unflushed = 0
        self._log.write_pending()

    def close(self) -> None:
        """Write what is buffered and fsync it, so the log survives a crash after exit;
        lines the disk still refuses are counted in `dropped`."""
        self._log.close()

    def discard(self) -> None:
        """Close the sink and delete its log and the directories created for it, for a run
        that could not start; a directory holding anything else is left alone."""
        self._log.close()
        self._directory.remove([self._file_name])


def _line(event: TelemetryEvent, rank: int | None, ids: tuple[str, str] | None) -> bytes:
    record = event.to_record()
    if rank is not None:
        record["rank"] = rank
    if ids is not None:
        record["trace_id"], record["span_id"] = ids
    return (strict_json_text(record) + "\n").encode("ascii")
