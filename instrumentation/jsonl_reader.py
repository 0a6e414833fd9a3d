"""Reads event logs back into events, reporting corrupt lines without stopping: one
`events.jsonl`, its rotated set, or every rank's log of a run of several processes.

`esper replay` reads logs written by this project and by the original system
(`tests/fixtures/` keeps one). A line that is not JSON, not an object, or not a valid
event is reported with its line number and skipped; every other line still comes out. The
strings "NaN", "Infinity" and "-Infinity" stay strings, so a round trip is lossless;
bare NaN/Infinity tokens, which a non-strict writer may have produced, read as floats.
`trace_id`, `span_id` and `rank` are not part of an event; `read_logged_events` keeps them
beside it, for replay.

Limits, so that a corrupt or hostile file costs bounded memory and time: a line holds at
most `MAX_LINE_BYTES` bytes (a DEBUG PPO_UPDATE_COMPLETED with per-layer statistics, the
longest line this project writes, is a few KB) and nests objects and arrays at most
`MAX_DEPTH` levels deep (events nest 4: line, data, layer, statistic). A longer or deeper
line is reported and skipped like any corrupt line; an over-long one is skipped in chunks,
never held in memory whole. The depth is checked before parsing, so neither the JSON
parser nor any later recursive walk of the data (strict-JSON conversion, attribute
flattening) can reach Python's recursion limit. Only regular files are read: a FIFO would
block and a device such as /dev/zero never end, so `open_log` refuses them.

A log may be a rotated set (`JsonlSink(max_bytes=...)`, or logrotate): `log_files` is the
one place that knows its order, oldest file first; reading each of its files in turn reads
the whole set as one log. When rotation kept a bounded number of files, the set starts
with the oldest line still kept, not with the run's first event.

A run of several processes has one log set per rank in its run directory: `events.jsonl`
written by rank 0, `events-rank<N>.jsonl` by rank N, each line carrying `"rank": N`
(`LoggedEvent.rank`; None in a single-process or legacy log). `run_log_sets` lists the
sets of a run, in rank order, and `read_run_events` merges them into one stream in
timestamp order, reading each set file by file as the merge needs it. Timestamp order is
the order that matters for replay: a rank sends its episodes' results to rank 0 before
rank 0 updates, so every rank's events of a batch come before that batch's
PPO_UPDATE_COMPLETED. Within one rank, file order is kept; equal timestamps keep rank
order.
"""

from __future__ import annotations

import glob
import heapq
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from app.contracts.events import TelemetryEvent

_log = logging.getLogger(__name__)

_ROTATED = re.compile(r"\.(\d+)")
# The newest file of a rank's log set; rank 0 writes `events.jsonl`.
_RANK_LOG = re.compile(r"events(?:-rank([1-9][0-9]*))?\.jsonl")
# Any file of a rank's log set, rotated ones included.
_RANK_LOG_FILE = re.compile(rf"({_RANK_LOG.pattern})(?:\.\d+)?")

MAX_LINE_BYTES = 1 << 20  # 1 MiB, newline excluded
MAX_DEPTH = 64
_SKIP_CHUNK_BYTES = 1 << 20
# What decides nesting: quotes, escapes (which may hide a quote) and brackets.
_STRUCTURE = re.compile(r'\\.|["\[\]{}]', re.DOTALL)
_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFileError(OSError):
    """The path names a directory, device, FIFO or socket, not a log file."""


class NoLogError(ValueError):
    """A directory given as a run holds no rank's log."""


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
    rank: int | None = None


def read_logged_events(
    path: Path, on_error: Callable[[LogLineError], None] = _log_warning
) -> Iterator[LoggedEvent]:
    """Yield the events of the log in file order, each with its line's `trace_id` and
    `span_id` (None when absent or not strings); bad lines go to on_error, then skipped.

    Blank lines are ignored. The default on_error logs a warning, so nothing is dropped
    silently.
    """
    with open_log(path) as file:
        for line_number, raw in enumerate(_lines(file), start=1):
            if isinstance(raw, _OverLong):
                on_error(LogLineError(path, line_number, str(raw)))
                continue
            if not raw.strip():
                continue
            try:
                logged = _parse(raw)
            except ValueError as exc:
                on_error(LogLineError(path, line_number, str(exc)))
                continue
            yield logged


def open_log(path: Path) -> BinaryIO:
    """path opened for binary reading; NotRegularFileError (an OSError) unless it is a
    regular file (or a link to one).

    Opened non-blocking, so that a FIFO without a writer is refused rather than waited
    for; the flag does nothing to a regular file.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _FILE_KINDS if test(mode)), "a special file")
            raise NotRegularFileError(f"not a regular file: {kind}")
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


@dataclass(frozen=True)
class _OverLong:
    """A line over MAX_LINE_BYTES, skipped: only its length is kept."""

    length: int

    def __str__(self) -> str:
        return f"line of {self.length} bytes is over the {MAX_LINE_BYTES}-byte limit"


def _lines(file: BinaryIO) -> Iterator[bytes | _OverLong]:
    """Each line of file, in memory bounded by MAX_LINE_BYTES whatever the file holds."""
    while line := file.readline(MAX_LINE_BYTES + 1):
        if line.endswith(b"\n") or len(line) <= MAX_LINE_BYTES:
            yield line
        else:
            yield _OverLong(len(line) + _skip_line(file))


def _skip_line(file: BinaryIO) -> int:
    """Read past the rest of the current line, a chunk at a time; its length, newline
    excluded."""
    skipped = 0
    while chunk := file.readline(_SKIP_CHUNK_BYTES):
        if chunk.endswith(b"\n"):
            return skipped + len(chunk) - 1
        skipped += len(chunk)
    return skipped


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


def log_rank(name: str) -> int | None:
    """The rank whose newest log file is called name: 0 for `events.jsonl`, N for
    `events-rank<N>.jsonl`; None for any other name, rotated files' included."""
    match = _RANK_LOG.fullmatch(name)
    return None if match is None else int(match[1] or 0)


def run_log_sets(path: Path) -> list[list[Path]]:
    """The log sets to read for path, in rank order, each oldest file first (`log_files`).

    A directory is a run: every rank's set in it (NoLogError when there is none). A rank's
    log (`events.jsonl`, `events-rank<N>.jsonl`) beside other ranks' logs stands for its
    whole run, so that a user pointing at rank 0's log gets every rank. Any other path is
    one log set, as named (a missing file is left for the reader to report).
    """
    if path.is_dir():
        sets = _directory_sets(path)
        if not sets:
            raise NoLogError(
                f"no event log in {path} (expected events.jsonl or events-rank<N>.jsonl)"
            )
        return sets
    if log_rank(path.name) is not None and path.exists():
        sets = _directory_sets(path.parent)
        if len(sets) > 1:
            return sets
    return [log_files(path)]


def _directory_sets(directory: Path) -> list[list[Path]]:
    """Each rank's log set in directory, in rank order. A rank whose newest file is
    missing (rotation renamed it away, then the disk refused the next) still has its
    rotated files read."""
    heads: dict[int, Path] = {}
    for entry in directory.iterdir():
        match = _RANK_LOG_FILE.fullmatch(entry.name)
        if match:
            heads[int(match[2] or 0)] = directory / match[1]
    return [
        [file for file in log_files(head) if file != head or os.path.lexists(head)]
        for _, head in sorted(heads.items())
    ]


def read_run_events(
    log_sets: Iterable[Sequence[Path]], on_error: Callable[[LogLineError], None] = _log_warning
) -> Iterator[LoggedEvent]:
    """The events of every log set (`run_log_sets`) as one stream in timestamp order
    (module docstring); bad lines go to on_error, then skipped, as in
    `read_logged_events`. Each set is read lazily, file by file: memory does not grow
    with the logs' size."""
    streams = [_read_set(files, on_error) for files in log_sets]
    # heapq.merge never reorders one input, and breaks ties by input position: rank order.
    return heapq.merge(*streams, key=_timestamp)


def _read_set(
    files: Sequence[Path], on_error: Callable[[LogLineError], None]
) -> Iterator[LoggedEvent]:
    for path in files:
        yield from read_logged_events(path, on_error)


def _timestamp(logged: LoggedEvent) -> datetime:
    return logged.event.timestamp


def _parse(raw: bytes) -> LoggedEvent:
    try:
        # utf-8-sig: a byte order mark is skipped, as json.loads would for bytes.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid UTF-8: {exc.reason}") from None
    check_depth(text)
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except ValueError as exc:  # e.g. an integer over Python's digit limit
        raise ValueError(f"invalid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    try:
        event = TelemetryEvent.from_record(record)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid event: {exc}") from None
    return LoggedEvent(
        event,
        _text(record.get("trace_id")),
        _text(record.get("span_id")),
        _rank(record.get("rank")),
    )


def check_depth(text: str) -> None:
    """ValueError if text nests arrays and objects deeper than MAX_DEPTH (outside strings).

    Exact for valid JSON; for invalid JSON it agrees with the parser up to the first
    error, which the parser reports before going any deeper.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth = 0
    in_string = False
    for match in _STRUCTURE.finditer(text):
        token = match[0]
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) > 1:
            continue
        elif token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                column = match.start() + 1
                raise ValueError(f"nested deeper than {MAX_DEPTH} levels at column {column}")
        else:
            depth -= 1


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _rank(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
