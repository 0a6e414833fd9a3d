"""A run's event log as the command line starts and ends it.

At the start, `start_event_log` creates the run directory with `events.jsonl` and
`run.json` in it, or, when the disk cannot take them (full, read-only, over a file size
limit), raises `TelemetryDirError` after removing what it created, so that a run that
cannot start leaves nothing behind. At the end, `log_loss_lines` tells the summary how
many events the log lost, and why.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from instrumentation.sinks.jsonl import EVENTS_FILE_NAME, JsonlSink, SpanIdsProvider
from instrumentation.sinks.run_directory import join_run_directory

RUN_FILE_NAME = "run.json"


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
    data = (json.dumps(record, indent=2, default=str) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def log_loss_lines(sinks: Iterable[object]) -> list[str]:
    """The summary's `log loss:` line, when the JSONL log lost events; no line otherwise."""
    return [
        f"  log loss:  {sink.dropped} events not written to the event log "
        f"({sink.last_error or 'the log was closed before they were written'})"
        for sink in sinks
        if isinstance(sink, JsonlSink) and sink.dropped
    ]
