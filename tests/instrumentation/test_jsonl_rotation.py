"""Rotation of the JSONL event log: `JsonlSink(max_bytes=..., keep=...)`, reading the rotated
set back in order, and `esper train --telemetry-max-bytes/--telemetry-keep`."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import read_log
from log_lines import reject_constant, set_lines, sized_event, strict_lines, written_line

from app import telemetry
from app.cli import main
from app.contracts.events import TelemetryEvent, TelemetryLevel
from instrumentation.jsonl_reader import log_files
from instrumentation.sinks import ConsoleSink
from instrumentation.sinks.jsonl import JsonlSink
from instrumentation.sinks.strict_json import to_strict_json


def _event(index: int, padding: int = 0) -> TelemetryEvent:
    return sized_event(index, padding)


def _names(sink: JsonlSink) -> list[str]:
    return [path.name for path in log_files(sink.path)]


def _emit_all(sink: JsonlSink, events: list[TelemetryEvent]) -> None:
    for event in events:
        sink.emit(event)
    sink.close()


@pytest.mark.parametrize("buffer_events", [1, 1000], ids=["flushed", "buffered"])
def test_a_line_that_fills_the_file_exactly_stays_and_the_next_rotates(
    tmp_path: Path, buffer_events: int
) -> None:
    events = [_event(0), _event(1), _event(2)]
    lines = [written_line(event) for event in events]
    sink = JsonlSink(tmp_path, buffer_events=buffer_events, max_bytes=len(lines[0]) + len(lines[1]))

    sink.emit(events[0])
    sink.emit(events[1])
    assert _names(sink) == ["events.jsonl"], "a file of exactly max_bytes must not rotate"
    sink.emit(events[2])
    sink.close()

    assert _names(sink) == ["events.jsonl.1", "events.jsonl"]
    assert (sink.path.parent / "events.jsonl.1").read_bytes() == lines[0] + lines[1]
    assert sink.path.read_bytes() == lines[2]


@pytest.mark.parametrize("buffer_events", [1, 1000], ids=["flushed", "buffered"])
def test_a_line_one_byte_too_long_rotates_before_it_is_written(
    tmp_path: Path, buffer_events: int
) -> None:
    events = [_event(0), _event(1)]
    lines = [written_line(event) for event in events]
    sink = JsonlSink(
        tmp_path, buffer_events=buffer_events, max_bytes=len(lines[0]) + len(lines[1]) - 1
    )

    _emit_all(sink, events)

    assert (sink.path.parent / "events.jsonl.1").read_bytes() == lines[0]
    assert sink.path.read_bytes() == lines[1]


@pytest.mark.parametrize("seed", range(5))
def test_no_line_is_lost_duplicated_or_cut_and_the_set_reads_in_order(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    events = [_event(i, padding=rng.randrange(0, 600)) for i in range(300)]
    max_bytes = rng.randrange(1024, 8192)
    sink = JsonlSink(tmp_path, buffer_events=rng.choice([1, 7, 64]), max_bytes=max_bytes, keep=1000)

    _emit_all(sink, events)

    files = log_files(sink.path)
    assert len(files) > 3
    assert [path.name for path in files[:-1]] == [
        f"events.jsonl.{n}" for n in range(len(files) - 1, 0, -1)
    ]
    for path in files:
        lines = strict_lines(path)
        assert lines, f"{path.name} is empty"
        assert path.stat().st_size <= max_bytes or len(lines) == 1
    assert set_lines(sink) == [written_line(event) for event in events]
    assert [event.data["i"] for event in read_log(sink.path)] == list(range(300))


def test_each_file_is_as_full_as_the_next_line_allows(tmp_path: Path) -> None:
    events = [_event(i, padding=(i * 37) % 200) for i in range(100)]
    sink = JsonlSink(tmp_path, max_bytes=2048, keep=1000)

    _emit_all(sink, events)

    files = log_files(sink.path)
    for path, following in itertools.pairwise(files):
        first_of_next = strict_lines(following)[0]
        assert path.stat().st_size + len(first_of_next) > 2048


def test_keep_drops_the_oldest_files_only(tmp_path: Path) -> None:
    events = [_event(i, padding=100) for i in range(200)]
    everything = JsonlSink(tmp_path / "all", max_bytes=2048, keep=1000)
    _emit_all(everything, events)
    all_files = [strict_lines(path) for path in log_files(everything.path)]
    assert len(all_files) > 5

    sink = JsonlSink(tmp_path / "kept", max_bytes=2048, keep=3)
    _emit_all(sink, events)

    assert _names(sink) == ["events.jsonl.3", "events.jsonl.2", "events.jsonl.1", "events.jsonl"]
    kept = [strict_lines(path) for path in log_files(sink.path)]
    assert kept == all_files[-4:], "the newest files, exactly as they would have been"
    indexes = [event.data["i"] for event in read_log(sink.path)]
    assert indexes == list(range(200 - len(indexes), 200)), "a contiguous tail, in order"


def test_keep_one_holds_a_single_rotated_file(tmp_path: Path) -> None:
    events = [_event(i, padding=300) for i in range(50)]
    sink = JsonlSink(tmp_path, max_bytes=1024, keep=1)

    _emit_all(sink, events)

    assert _names(sink) == ["events.jsonl.1", "events.jsonl"]
    assert set_lines(sink) == [written_line(event) for event in events][-len(set_lines(sink)) :]


def test_an_oversized_line_goes_alone_into_its_own_file(tmp_path: Path) -> None:
    events = [_event(0), _event(1, padding=3000), _event(2), _event(3, padding=3000)]
    sink = JsonlSink(tmp_path, buffer_events=1000, max_bytes=1024)

    _emit_all(sink, events)

    lines = [written_line(event) for event in events]
    assert len(lines[1]) > 1024
    contents = [path.read_bytes() for path in log_files(sink.path)]
    assert contents == [lines[0], lines[1], lines[2], lines[3]]


def test_an_oversized_first_line_does_not_leave_an_empty_file(tmp_path: Path) -> None:
    events = [_event(0, padding=3000), _event(1)]
    sink = JsonlSink(tmp_path, max_bytes=1024)

    _emit_all(sink, events)

    contents = [path.read_bytes() for path in log_files(sink.path)]
    assert contents == [written_line(events[0]), written_line(events[1])]


def test_without_max_bytes_the_log_never_rotates(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path)
    _emit_all(sink, [_event(i, padding=500) for i in range(100)])
    assert _names(sink) == ["events.jsonl"]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"max_bytes": 0}, "max_bytes"),
        ({"keep": 0}, "keep"),
        ({"max_bytes": 10, "keep": -1}, "keep"),
    ],
)
def test_bad_rotation_options_are_rejected(
    tmp_path: Path, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        JsonlSink(tmp_path, **options)
    assert not list(tmp_path.iterdir()), "no run directory for a sink that was refused"


# --- esper train ------------------------------------------------------------------------


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[TelemetryEvent]]:
    """Every event `esper train` hands its sinks, in order (seen by the console sink); the
    process state an in-process run changes is put back afterwards."""
    seen: list[TelemetryEvent] = []

    class RecordingConsole(ConsoleSink):
        def deliver(self, event: TelemetryEvent, captured: object) -> None:
            seen.append(event)
            super().deliver(event, captured)

    monkeypatch.setattr("app.cli.train.ConsoleSink", RecordingConsole)
    threads = torch.get_num_threads()
    handler = telemetry.event_handler()
    yield seen
    torch.set_num_threads(threads)
    telemetry.set_event_handler(handler)
    telemetry.set_level(TelemetryLevel.NORMAL)


def _train(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(["train", *args])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    return code, capsys.readouterr().err


SMALL_RUN = ["--dataset", "synthetic", "--episodes", "2", "--envs", "2", "--max-epochs", "4"]


def _without_span_ids(line: bytes) -> dict[str, Any]:
    record = json.loads(line, parse_constant=reject_constant)
    assert isinstance(record, dict)
    record.pop("trace_id", None)
    record.pop("span_id", None)
    return record


def test_train_rotates_its_log_into_a_set_that_holds_every_event_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], emitted: list[TelemetryEvent]
) -> None:
    # Four episodes: two batches, about 14 kB of events at the default level.
    args = [*SMALL_RUN, "--episodes", "4", "--no-progress", "--telemetry-dir", str(tmp_path)]
    args += ["--telemetry-max-bytes", "4096", "--telemetry-keep", "1000"]

    code, err = _train(args, capsys)

    assert code == 0, err
    (log,) = tmp_path.glob("telemetry_*/events.jsonl")
    files = log_files(log)
    assert len(files) >= 3, f"expected several files, got {[p.name for p in files]}"
    lines = [line for path in files for line in strict_lines(path)]
    for path in files:
        assert path.stat().st_size <= 4096 or len(strict_lines(path)) == 1
    assert emitted, "no event reached the sinks"
    assert [_without_span_ids(line) for line in lines] == [
        to_strict_json(event.to_record()) for event in emitted
    ]
    assert [event.event_id for event in read_log(log)] == [e.event_id for e in emitted]


def test_train_keep_bounds_the_rotated_files_and_keeps_the_newest_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], emitted: list[TelemetryEvent]
) -> None:
    args = [*SMALL_RUN, "--no-progress", "--telemetry-dir", str(tmp_path)]
    args += ["--telemetry-max-bytes", "2048", "--telemetry-keep", "2"]

    code, err = _train(args, capsys)

    assert code == 0, err
    (log,) = tmp_path.glob("telemetry_*/events.jsonl")
    assert [path.name for path in log_files(log)] == [
        "events.jsonl.2",
        "events.jsonl.1",
        "events.jsonl",
    ]
    kept = [event.event_id for event in read_log(log)]
    assert 0 < len(kept) < len(emitted)
    assert kept == [event.event_id for event in emitted][-len(kept) :]


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--telemetry-max-bytes", "100"], "--telemetry-max-bytes"),
        (["--telemetry-max-bytes", "lots"], "--telemetry-max-bytes"),
        (["--telemetry-keep", "0"], "--telemetry-keep"),
        (["--telemetry-keep", "1.5"], "--telemetry-keep"),
    ],
)
def test_bad_rotation_flags_exit_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    emitted: list[TelemetryEvent],
    flags: list[str],
    named: str,
) -> None:
    telemetry_dir = tmp_path / "telemetry"
    args = [*SMALL_RUN, *flags, "--telemetry-dir", str(telemetry_dir)]

    code, err = _train(args, capsys)

    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and named in lines[0], lines
    assert not telemetry_dir.exists()
