"""A run's event log and its record, `run.json`, as the command line starts and ends them.

At the start, `start_event_log` creates the run directory with `events.jsonl` and
`run.json` in it, or, when the disk cannot take them (full, read-only, over a file size
limit), raises `TelemetryDirError` after removing what it created, so that a run that
cannot start leaves nothing behind. At the end, `log_loss_lines` tells the summary how
many events the log lost, and why, and `rewrite_run_file` replaces `run.json` with the
record of how the run ended, atomically: a failure leaves the record of its start whole.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.plurals import counted
from instrumentation.sinks.jsonl import EVENTS_FILE_NAME, JsonlSink, SpanIdsProvider
from instrumentation.sinks.run_directory import join_run_directory
from instrumentation.sinks.strict_json import to_strict_json

RUN_FILE_NAME = "run.json"


@dataclass(frozen=True)
class ResumedFrom:
    """The checkpoint a run continues, the run that wrote it (None when the checkpoint
    does not say) and how many episodes it had done."""

    checkpoint: str
    run_id: str | None
    episodes_done: int


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """What `run.json` holds (docs/events.md), in its order. `status` is "running" until
    the run ends, then "completed", "interrupted", "terminated", "failed" or "stopped",
    with `status_reason` saying why when there is more to say."""

    run_id: str
    processes: int
    status: str = "running"
    status_reason: str | None = None
    started_at: str
    ended_at: str | None = None
    telemetry_level: str
    final_accuracy: float | None = None
    final_reward: float | None = None
    events_by_type: dict[str, int] = field(default_factory=dict)
    resumed_from: ResumedFrom | None
    config: dict[str, Any]

    def document(self) -> dict[str, Any]:
        """The record as strict JSON data (a non-finite number becomes "NaN", as in the
        log)."""
        document: dict[str, Any] = to_strict_json(asdict(self))
        return document


class TelemetryDirError(Exception):
    """The run directory, its log or run.json could not be written."""

    def __init__(self, telemetry_dir: Path, error: OSError) -> None:
        super().__init__(f"cannot write telemetry to {telemetry_dir}: {reason(error)}")


def reason(error: OSError) -> str:
    """The system's words for an OSError ("No space left on device"), without the path."""
    return error.strerror or str(error)


def start_event_log(
    telemetry_dir: Path,
    run_record: Mapping[str, Any],
    *,
    context_provider: SpanIdsProvider | None = None,
    max_bytes: int | None = None,
    keep: int = 5,
    rank: int | None = None,
) -> JsonlSink:
    """The run's JSONL sink, with `run.json` (run_record as JSON) written beside its log;
    `rank` 0 in a run of several processes."""
    try:
        sink = JsonlSink(
            telemetry_dir,
            context_provider=context_provider,
            max_bytes=max_bytes,
            keep=keep,
            rank=rank,
        )
    except OSError as error:
        raise TelemetryDirError(telemetry_dir, error) from None
    try:
        write_run_file(sink.path.parent / RUN_FILE_NAME, run_record)
    except OSError as error:
        sink.discard()
        raise TelemetryDirError(telemetry_dir, error) from None
    return sink


def join_event_log(
    run_dir: Path,
    rank: int,
    *,
    context_provider: SpanIdsProvider | None = None,
    max_bytes: int | None = None,
    keep: int = 5,
) -> JsonlSink:
    """Rank `rank`'s own log, `events-rank<rank>.jsonl`, in the run directory that rank 0
    created."""
    try:
        return JsonlSink(
            run_dir.parent,
            context_provider=context_provider,
            max_bytes=max_bytes,
            keep=keep,
            run_directory=join_run_directory(run_dir),
            rank=rank,
        )
    except OSError as error:
        raise TelemetryDirError(run_dir.parent, error) from None


def discard_event_log(sink: JsonlSink) -> None:
    """Remove what `start_event_log` created (`run.json`, the log, the run directory), or
    `join_event_log` (a rank's log), for a run that did not start."""
    if sink.path.name == EVENTS_FILE_NAME:
        (sink.path.parent / RUN_FILE_NAME).unlink(missing_ok=True)
    sink.discard()


def write_run_file(path: Path, record: Mapping[str, Any]) -> None:
    """Create `path` holding record as indented JSON; on failure a file it created is
    removed, and one that was already there is left alone."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        _write_all(fd, _run_file_bytes(record))
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def rewrite_run_file(path: Path, record: Mapping[str, Any]) -> None:
    """Replace `path` with record: written to a temporary file beside it, flushed to the
    disk and renamed over it, so that a reader sees the old record or the new one, and a
    failure (a full disk) leaves the old one whole and no temporary file. Raises
    OSError."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, _mode_of(path))  # not mkstemp's 0o600
            _write_all(fd, _run_file_bytes(record))
            os.fsync(fd)  # some file systems report a full disk only when data reaches it
        finally:
            os.close(fd)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _mode_of(path: Path) -> int:
    """The permissions `path` was created with; a new file's when it is gone."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o644


def _run_file_bytes(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, indent=2, default=str) + "\n").encode("utf-8")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def log_loss_lines(sinks: Iterable[object]) -> list[str]:
    """The summary's `log loss:` line, when the JSONL log lost events; no line otherwise."""
    return [
        f"  log loss:  {counted(sink.dropped, 'event')} not written to the event log "
        f"({sink.last_error or 'the log was closed before they were written'})"
        for sink in sinks
        if isinstance(sink, JsonlSink) and sink.dropped
    ]
