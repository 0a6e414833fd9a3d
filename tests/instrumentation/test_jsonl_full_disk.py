"""The JSONL sink on a full disk: a real tmpfs filled up (ENOSPC) and a real file size limit
in a child process (EFBIG). Lines reach the log whole or not at all, refused lines wait
(bounded) and are written once space returns, and every line lost is counted."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from filesystems import Tmpfs, mounted_tmpfs
from log_lines import set_lines, sized_event, strict_lines, written_line
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.contracts.events import TelemetryEvent
from app.plurals import counted
from instrumentation.event_log import log_loss_lines
from instrumentation.hub import TelemetryHub
from instrumentation.jsonl_reader import log_files
from instrumentation.otel import configure_opentelemetry
from instrumentation.sinks.jsonl import JsonlSink

KIB = 1024
ENOSPC_TEXT = "No space left on device"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    """A 256 KiB tmpfs, unmounted after the test."""
    with mounted_tmpfs(tmp_path / "fs", size=256 * KIB) as filesystem:
        yield filesystem


def _event(index: int, padding: int = 900) -> TelemetryEvent:
    return sized_event(index, padding)


def test_a_full_disk_keeps_lines_whole_and_writing_resumes_when_space_returns(
    tmpfs: Tmpfs,
) -> None:
    events = [_event(i) for i in range(30)]
    expected = [written_line(event) for event in events]
    sink = JsonlSink(tmpfs.path, buffer_events=1)
    filler = tmpfs.fill(leave=8 * KIB)

    for event in events[:20]:
        sink.emit(event)
        strict_lines(sink.path)  # after every write, full disk or not

    kept = strict_lines(sink.path)
    assert 0 < len(kept) < 20
    assert kept == expected[: len(kept)]
    assert len(kept[0]) * len(kept) < 8 * KIB, "no room was left for one more line"
    assert sink.last_error == ENOSPC_TEXT
    assert sink.dropped == 0, "the refused lines wait within the bounds"

    filler.unlink()
    for event in events[20:]:
        sink.emit(event)
    sink.close()

    assert strict_lines(sink.path) == expected, "no gap, no duplicate"
    assert sink.dropped == 0


@pytest.mark.parametrize("bound", ["max_pending_lines", "max_pending_bytes"])
def test_lines_beyond_the_bounds_are_dropped_and_counted(tmpfs: Tmpfs, bound: str) -> None:
    events = [_event(i) for i in range(30)]
    expected = [written_line(event) for event in events]
    limits = {"max_pending_lines": 4, "max_pending_bytes": 4 * len(expected[0]) + 10}
    sink = JsonlSink(tmpfs.path, buffer_events=1, **{bound: limits[bound]})
    hub = TelemetryHub([sink])
    filler = tmpfs.fill(leave=4 * KIB)

    for event in events[:20]:
        hub.emit(event)
    hub.flush()  # the delivery thread has written what the disk took
    written = len(strict_lines(sink.path))
    assert sink.dropped == 20 - written - 4, "4 lines wait, the rest are dropped"
    assert hub.sink_errors == {"jsonl": sink.dropped}

    filler.unlink()
    for event in events[20:]:
        hub.emit(event)
    hub.close()

    # The log holds what was written, then the lines that waited, then the rest: one gap,
    # exactly as long as the count of lines dropped.
    assert strict_lines(sink.path) == expected[: written + 4] + expected[20:]
    assert sink.dropped == 20 - written - 4 > 0
    assert hub.sink_errors == {"jsonl": sink.dropped}


def test_lines_still_waiting_at_close_are_lost_and_counted(tmpfs: Tmpfs) -> None:
    events = [_event(i) for i in range(20)]
    sink = JsonlSink(tmpfs.path)  # 64 lines buffered: nothing is written before close
    hub = TelemetryHub([sink])
    tmpfs.fill(leave=4 * KIB)

    for event in events:
        hub.emit(event)
    hub.close()

    kept = strict_lines(sink.path)
    assert 0 < len(kept) < 20
    assert kept == [written_line(event) for event in events[: len(kept)]]
    assert sink.dropped == hub.emitted - len(kept)
    assert hub.sink_errors == {"jsonl": sink.dropped}
    assert log_loss_lines(hub.sinks) == [
        f"  log loss:  {counted(sink.dropped, 'event')} not written to the event log "
        f"({ENOSPC_TEXT})"
    ]


def test_lost_lines_reach_the_sink_error_metric(
    tmpfs: Tmpfs, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    session = configure_opentelemetry("full-disk", prometheus_port=0, install_globally=False)
    try:
        sink = JsonlSink(tmpfs.path)
        hub = TelemetryHub([sink])
        session.report_sink_errors(hub)
        tmpfs.fill(leave=4 * KIB)
        for index in range(20):
            hub.emit(_event(index))
        hub.close()
        registry = session.prometheus_registry
        assert registry is not None
        text = generate_latest(registry).decode()
    finally:
        session.shutdown(timeout_s=2)

    (family,) = [f for f in text_string_to_metric_families(text) if f.name.endswith("errors")]
    values = {s.labels["sink"]: s.value for s in family.samples if s.name.endswith("_total")}
    assert sink.dropped > 0
    assert values["jsonl"] == sink.dropped


def test_rotation_goes_on_through_a_full_disk(tmpfs: Tmpfs) -> None:
    events = [_event(i, padding=400) for i in range(60)]
    sink = JsonlSink(tmpfs.path, buffer_events=3, max_bytes=2 * KIB, keep=1000)
    tmpfs.fill(leave=12 * KIB)

    for event in events[:40]:
        sink.emit(event)
        set_lines(sink)
    assert sink.last_error == ENOSPC_TEXT
    assert len(set_lines(sink)) < 40

    tmpfs.resize(1024 * KIB)  # space comes back: the filesystem grows
    for event in events[40:]:
        sink.emit(event)
    sink.close()

    files = log_files(sink.path)
    assert len(files) > 10
    for path in files:
        assert path.stat().st_size <= 2 * KIB
    assert set_lines(sink) == [written_line(event) for event in events]
    assert sink.dropped == 0


def test_a_next_file_that_cannot_be_created_is_created_when_it_can(tmp_path: Path) -> None:
    events = [_event(i, padding=400) for i in range(20)]
    with mounted_tmpfs(tmp_path / "fs", size=256 * KIB, inodes=16) as tmpfs:
        sink = JsonlSink(tmpfs.path, buffer_events=1, max_bytes=2 * KIB, keep=1000)
        spare = tmpfs.use_up_inodes()
        run_dir = sink.path.parent

        for event in events[:10]:
            sink.emit(event)
        # Renamed to events.jsonl.1 (renaming needs no inode), but no inode for the next.
        assert not sink.path.exists()
        assert [path.name for path in run_dir.iterdir()] == ["events.jsonl.1"]
        assert sink.last_error == ENOSPC_TEXT

        for path in spare:
            path.unlink()
        for event in events[10:]:
            sink.emit(event)
        sink.close()

        assert set_lines(sink) == [written_line(event) for event in events]
        assert sink.dropped == 0


# The child writes under a file size limit, with SIGXFSZ ignored as `esper train` does, and
# reports what the sink lost.
_UNDER_LIMIT = textwrap.dedent(
    """
    import json, signal, sys
    from pathlib import Path
    from app.contracts.events import EventType, TelemetryEvent
    from instrumentation.sinks.jsonl import JsonlSink

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    sink = JsonlSink(Path(sys.argv[1]), buffer_events=1)
    for index in range(30):
        sink.emit(TelemetryEvent(EventType.EPOCH_COMPLETED, data={"i": index, "pad": "x" * 900}))
    sink.close()
    print(json.dumps({"dropped": sink.dropped, "reason": sink.last_error}))
    """
)


def test_a_file_size_limit_keeps_lines_whole_and_counts_the_rest(tmp_path: Path) -> None:
    limit = 10 * KIB + 123  # inside a line: the write that crosses it is cut back

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    child = subprocess.run(
        [sys.executable, "-c", _UNDER_LIMIT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit_file_size,
        check=False,
    )

    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    (log,) = tmp_path.glob("telemetry_*/events.jsonl")
    kept = strict_lines(log)
    assert report["reason"] == "File too large"
    assert report["dropped"] == 30 - len(kept) > 0
    assert [json.loads(line)["data"]["i"] for line in kept] == list(range(len(kept)))
    assert log.stat().st_size <= limit
