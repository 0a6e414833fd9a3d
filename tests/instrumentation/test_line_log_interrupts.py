"""An interrupt at the two moments of `LineLog` that a signal can hit but a test cannot time
from outside (injected by patching, as a signal handler raising there would): right after
a write returned, during close, and right after the next file of a rotation was created."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import instrumentation.sinks.line_log as line_log
from instrumentation.sinks.line_log import LineLog


def lines(count: int) -> list[bytes]:
    return [f'{{"i": {i}}}\n'.encode() for i in range(count)]


def test_lines_a_cut_short_close_wrote_are_not_counted_as_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = LineLog(tmp_path / "events.jsonl")
    for line in lines(5):
        log.append(line)
    write_all = line_log._write_all

    def write_then_interrupt(fd: int, data: bytes) -> None:
        write_all(fd, data)
        raise KeyboardInterrupt

    monkeypatch.setattr(line_log, "_write_all", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        log.close()

    assert log.dropped == 0
    assert (tmp_path / "events.jsonl").read_bytes() == b"".join(lines(5))


def test_a_rotation_cut_short_after_creating_the_next_file_goes_on_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.jsonl"
    log = LineLog(path, max_bytes=30, keep=3)
    first, second = lines(2)
    log.append(first)
    log.write_pending()
    real_open = os.open
    calls = {"count": 0}

    def open_then_interrupt(*args: object, **kwargs: object) -> int:
        fd = real_open(*args, **kwargs)  # type: ignore[arg-type]
        calls["count"] += 1
        if calls["count"] == 1:
            raise KeyboardInterrupt
        return fd

    log.append(second * 3)  # over max_bytes with the first line: rotates first
    monkeypatch.setattr(line_log.os, "open", open_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        log.write_pending()
    monkeypatch.setattr(line_log.os, "open", real_open)
    log.write_pending()
    log.close()

    assert log.dropped == 0
    assert path.with_name("events.jsonl.1").read_bytes() == first
    assert path.read_bytes() == second * 3
