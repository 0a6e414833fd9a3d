"""Whole lines appended to a log file (and its rotated set) on a disk that may fill up.

`LineLog` owns every write: lines wait in memory until `write_pending`, which hands them
to `os.write` on the file descriptor. A write the disk refuses part way (ENOSPC on a full
filesystem, EFBIG past a file-size limit) is cut back with `os.ftruncate` to the end of
the last whole line, so every file of the log is strict JSONL whenever a write returns,
and the lines that did not fit stay pending: the next `write_pending` tries them again,
and writing resumes where it stopped once space comes back, with no gap and no
duplicate.

Pending lines are bounded (`max_pending_lines`, `max_pending_bytes`): a line that would
pass either bound, after a write that could not make room, is dropped, and lines still
pending when the log is closed are dropped too. Each dropped line is counted in
`dropped`, and `last_error` keeps the reason of the last failed write. A line longer
than `max_pending_bytes` is still taken when nothing else is pending.

With `max_bytes` the log rotates as logrotate numbers it (`events.jsonl` newest, then
`.1`, up to `.<keep>`, the oldest kept; older ones are deleted by design). Rotation
happens between lines, never inside one. On a full disk it behaves as writing does:
renaming needs no space, and when the next file cannot be created the lines wait, and
the file is created by the first `write_pending` that can.

Interrupt safety: an exception raised by a signal handler between any two statements
(SIGTERM turned into SystemExit, Ctrl-C) can neither drop nor duplicate a line. The file
itself is the record of what was written: `_settle` compares its size with the mark of
the last whole line and moves the mark over the pending lines found there, so a write
whose bookkeeping was cut short is counted, not repeated, by the next call.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_PENDING_LINES = 10_000
DEFAULT_MAX_PENDING_BYTES = 8 << 20

# O_EXCL: a log file is never shared or reopened; O_APPEND: each write lands at the end,
# which `ftruncate` moves back to the last whole line after a refused write.
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
# The most bytes joined for one write: bounds the copying each retry on a full disk costs.
_CHUNK_BYTES = 1 << 16


def check_options(
    max_bytes: int | None, keep: int, max_pending_lines: int, max_pending_bytes: int
) -> None:
    """Raise ValueError naming the first option that is below 1."""
    for name, value in [
        ("max_bytes", max_bytes),
        ("keep", keep),
        ("max_pending_lines", max_pending_lines),
        ("max_pending_bytes", max_pending_bytes),
    ]:
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


@dataclass(frozen=True)
class _Mark:
    """Where the log stands: replaced as a whole, in one assignment, so that an interrupt
    never leaves it half updated."""

    fd: int | None  # the newest file, open for appending; None when closed or not yet created
    size: int  # bytes of whole lines in that file
    lines: int  # lines written to the log so far, all files together
    written_bytes: int  # their bytes


@dataclass(frozen=True)
class _Pending:
    number: int  # the line's position in the log, 0 for the first
    end: int  # bytes of the log up to and including this line
    line: bytes


class LineLog:
    """Appends whole lines to `path`, bounded in memory when the disk refuses them."""

    def __init__(
        self,
        path: Path,
        max_bytes: int | None = None,
        keep: int = 5,
        max_pending_lines: int = DEFAULT_MAX_PENDING_LINES,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
    ) -> None:
        check_options(max_bytes, keep, max_pending_lines, max_pending_bytes)
        self._path = path
        self._max_bytes = max_bytes
        self._keep = keep
        self._max_pending_lines = max_pending_lines
        self._max_pending_bytes = max_pending_bytes
        self._pending: deque[_Pending] = deque()
        self._closed = False
        self.dropped = 0
        self.last_error: str | None = None
        self._mark = _Mark(os.open(path, _OPEN_FLAGS, 0o644), 0, 0, 0)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """Lines waiting to be written."""
        last = self._pending[-1] if self._pending else None
        return 0 if last is None else last.number + 1 - self._mark.lines

    def append(self, line: bytes) -> None:
        """Queue one line (ending in a newline); dropped and counted when the bounds are
        reached and writing cannot make room."""
        if self._closed:
            raise RuntimeError(f"log {self._path} is closed; line not written")
        if self._over_bounds(len(line)):
            self.write_pending()
            if self._over_bounds(len(line)):
                self.dropped += 1
                return
        mark, last = self._mark, self._pending[-1] if self._pending else None
        number, start = (
            (mark.lines, mark.written_bytes) if last is None else (last.number + 1, last.end)
        )
        self._pending.append(_Pending(number, start + len(line), line))

    def write_pending(self) -> None:
        """Write the pending lines, rotating between them when `max_bytes` says so; stop at
        the first write the disk refuses, note why in `last_error`, and keep what it
        refused for the next call."""
        if self._closed:
            return
        try:
            self._settle()
            while self._pending:
                fd = self._mark.fd
                lines = [] if fd is None else self._next_lines(self._mark.size)
                if fd is None or not lines:
                    self._start_next_file()
                else:
                    _write_all(fd, b"".join(lines))
                self._settle()
        except OSError as error:
            self.last_error = error.strerror or str(error)
            # Cut off the part of a line the refused write left; should that fail too, the
            # next call tries again before it writes anything.
            with contextlib.suppress(OSError):
                self._settle()

    def close(self) -> None:
        """Write what is pending and fsync it, so the log survives a crash after exit; what
        still cannot be written is dropped and counted. Later calls do nothing."""
        if self._closed:
            return
        try:
            self.write_pending()
            if self._mark.fd is not None:
                os.fsync(self._mark.fd)
        finally:
            self._closed = True
            # An interrupt inside the write above may have left lines on disk, whole or in
            # part: count against the file, not against bookkeeping it cut short.
            with contextlib.suppress(OSError):
                self._settle()
            self.dropped += self.pending
            self._pending.clear()
            mark = self._mark
            self._mark = _Mark(None, 0, mark.lines, mark.written_bytes)
            if mark.fd is not None:
                os.close(mark.fd)

    def _over_bounds(self, length: int) -> bool:
        waiting = self.pending
        if waiting == 0:
            return False
        waiting_bytes = self._pending[-1].end - self._mark.written_bytes
        return (
            waiting >= self._max_pending_lines or waiting_bytes + length > self._max_pending_bytes
        )

    def _next_lines(self, size: int) -> list[bytes]:
        """The pending lines that go next into the current file, holding `size` bytes: at
        most `_CHUNK_BYTES` of them unless the first alone is longer; none when the file
        must rotate first."""
        lines: list[bytes] = []
        chunk = 0
        for pending in self._pending:
            length = len(pending.line)
            if self._max_bytes is not None and size > 0 and size + length > self._max_bytes:
                break
            if lines and chunk + length > _CHUNK_BYTES:
                break
            lines.append(pending.line)
            size, chunk = size + length, chunk + length
        return lines

    def _settle(self) -> None:
        """Make the mark agree with the file: move it over the pending lines that reached
        the file whole, and truncate the file back to the mark when a line reached it only
        in part. Safe to repeat, and after an interrupt anywhere."""
        mark = self._mark
        if mark.fd is None:
            return
        on_disk = os.fstat(mark.fd).st_size
        size, lines, written = mark.size, mark.lines, mark.written_bytes
        for pending in self._pending:
            if pending.number < lines:
                continue
            if size + len(pending.line) > on_disk:
                break
            size, lines, written = size + len(pending.line), lines + 1, pending.end
        if on_disk > size:
            os.ftruncate(mark.fd, size)
        self._mark = _Mark(mark.fd, size, lines, written)
        while self._pending and self._pending[0].number < self._mark.lines:
            self._pending.popleft()

    def _start_next_file(self) -> None:
        """Rotate the current file away (when there is one) and create the next.

        Renaming needs no space; creating the file may fail on a full disk, and is then
        tried again by the next `write_pending`.
        """
        mark = self._mark
        if mark.fd is not None:
            os.fsync(mark.fd)
            if self._path.exists():  # not yet renamed by an attempt cut short
                self._shift_rotated()
            self._mark = _Mark(None, 0, mark.lines, mark.written_bytes)
            os.close(mark.fd)
        try:
            fd = os.open(self._path, _OPEN_FLAGS, 0o644)
        except FileExistsError:
            # Created by an attempt that an interrupt cut short before it was recorded; no
            # line was written through it, so it is taken over as it is.
            fd = os.open(self._path, _OPEN_FLAGS & ~os.O_EXCL, 0o644)
        self._mark = _Mark(fd, os.fstat(fd).st_size, mark.lines, mark.written_bytes)

    def _shift_rotated(self) -> None:
        """events.jsonl becomes .1, .1 becomes .2 ...; the one that would pass `keep` goes."""
        rotated = [self._path.with_name(f"{self._path.name}.{n}") for n in range(self._keep + 1)]
        rotated[self._keep].unlink(missing_ok=True)
        for number in range(self._keep - 1, 0, -1):
            if rotated[number].exists():
                rotated[number].replace(rotated[number + 1])
        self._path.replace(rotated[1])


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        # A regular file takes part of a write when space runs out, then refuses the rest
        # with the reason; `LineLog._settle` cuts off the part of a line that got in.
        view = view[os.write(fd, view) :]
