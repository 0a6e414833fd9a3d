from __future__ import annotations

import json
import math
import os
import threading
import tracemalloc
from pathlib import Path

import pytest
from helpers import read_log

from app.contracts.events import EventType, TelemetryEvent
from instrumentation.jsonl_reader import (
    MAX_DEPTH,
    MAX_LINE_BYTES,
    LogLineError,
    NotRegularFileError,
    read_logged_events,
)
from instrumentation.sinks.jsonl import JsonlSink


def _read(path: Path) -> tuple[list[TelemetryEvent], list[LogLineError]]:
    errors: list[LogLineError] = []
    events = list(read_log(path, on_error=errors.append))
    return events, errors


def test_reads_every_event_of_the_legacy_log(legacy_log: Path) -> None:
    events, errors = _read(legacy_log)

    assert errors == []
    assert len(events) == 170
    assert events[0].event_type is EventType.TAMIYO_INITIATED
    assert [event.to_record() for event in events] == [
        json.loads(line) for line in legacy_log.read_text().splitlines()
    ]


def test_corrupt_lines_are_reported_by_number_and_the_rest_still_read(
    legacy_log: Path, tmp_path: Path
) -> None:
    lines = legacy_log.read_text().splitlines()
    unknown_type = json.loads(lines[3]) | {"event_type": "SEED_EXPLODED"}
    corrupt = [
        *lines[:3],
        '{"event_id": "truncated", "event_',
        json.dumps(unknown_type),
        "[1, 2]",
        "",
        *lines[3:],
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(corrupt) + "\n")

    events, errors = _read(path)

    assert [event.event_id for event in events] == [json.loads(line)["event_id"] for line in lines]
    assert [error.line_number for error in errors] == [4, 5, 6]
    assert "invalid JSON" in errors[0].problem
    assert "unknown event_type 'SEED_EXPLODED'" in errors[1].problem
    assert "expected a JSON object" in errors[2].problem
    assert str(errors[1]) == f"{path}:5: {errors[1].problem}"


def test_invalid_utf8_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"event_id": "\xff"}\n')

    events, errors = _read(path)

    assert events == []
    assert [error.line_number for error in errors] == [1]


def test_non_finite_strings_round_trip_unchanged(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path)
    sink.emit(
        TelemetryEvent(
            EventType.NUMERICAL_INSTABILITY_DETECTED,
            data={"policy_loss": math.nan, "ratio_max": math.inf, "nested": [-math.inf]},
        )
    )
    sink.close()

    (event,), errors = _read(sink.path)

    assert errors == []
    assert event.data == {"policy_loss": "NaN", "ratio_max": "Infinity", "nested": ["-Infinity"]}


def test_by_default_bad_lines_are_logged_as_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("not json\n")

    assert list(read_logged_events(path)) == []
    assert "events.jsonl:1: invalid JSON" in caplog.text


def _good_line(message: str = "", **data: object) -> str:
    return json.dumps(TelemetryEvent(EventType.PLATEAU_DETECTED, message, data=data).to_record())


def _nested(levels: int) -> object:
    value: object = 0
    for _ in range(levels):
        value = {"a": value}
    return value


def test_nesting_up_to_the_limit_reads_and_deeper_is_a_bad_line(tmp_path: Path) -> None:
    # The line's object and `data` are two levels: data's content gets the rest.
    deepest = _good_line(deep=_nested(MAX_DEPTH - 2))
    too_deep = _good_line(deep=_nested(MAX_DEPTH - 1))
    path = tmp_path / "events.jsonl"
    path.write_text(f"{deepest}\n{too_deep}\n")

    events, errors = _read(path)

    assert [event.event_id for event in events] == [json.loads(deepest)["event_id"]]
    assert [(error.line_number, error.problem.split(" at ")[0]) for error in errors] == [
        (2, f"nested deeper than {MAX_DEPTH} levels")
    ]


def test_a_hundred_thousand_brackets_are_a_bad_line_not_a_recursion_error(
    tmp_path: Path,
) -> None:
    good = [_good_line(i=i) for i in range(3)]
    path = tmp_path / "events.jsonl"
    brackets, objects = "[" * 100_000, '{"a":' * 100_000
    path.write_text("\n".join([good[0], brackets, good[1], objects, good[2]]) + "\n")

    events, errors = _read(path)

    assert [event.data["i"] for event in events] == [0, 1, 2]
    assert [error.line_number for error in errors] == [2, 4]
    assert all("nested deeper than" in error.problem for error in errors)


def test_brackets_and_escaped_quotes_inside_strings_do_not_count_as_nesting(
    tmp_path: Path,
) -> None:
    message = '\\"[{' * 1000
    path = tmp_path / "events.jsonl"
    path.write_text(_good_line(message, deep=_nested(MAX_DEPTH - 2)) + "\n")

    (event,), errors = _read(path)

    assert errors == []
    assert event.message == message


def test_a_line_over_the_length_limit_is_a_bad_line_and_numbering_goes_on(
    tmp_path: Path,
) -> None:
    at_limit = _good_line("x" * MAX_LINE_BYTES)
    at_limit = _good_line("x" * (2 * MAX_LINE_BYTES - len(at_limit)))
    assert len(at_limit) == MAX_LINE_BYTES
    over = _good_line("y" * (MAX_LINE_BYTES - 100))
    over = _good_line("y" * (2 * MAX_LINE_BYTES - len(over) - 99))
    assert len(over) == MAX_LINE_BYTES + 1
    after = _good_line(i=1)
    path = tmp_path / "events.jsonl"
    path.write_text(f"{at_limit}\n{over}\n{after}\n{over}")

    events, errors = _read(path)

    assert [event.event_id for event in events] == [
        json.loads(line)["event_id"] for line in (at_limit, after)
    ]
    assert [str(error) for error in errors] == [
        f"{path}:{number}: line of {MAX_LINE_BYTES + 1} bytes is over the "
        f"{MAX_LINE_BYTES}-byte limit"
        for number in (2, 4)
    ]


def test_a_huge_file_without_newline_is_read_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = _good_line(i=0) + "\n"
    path.write_text(good)
    size = 200 * 1024 * 1024
    with path.open("r+b") as file:  # sparse: no disk used
        file.truncate(size)
    tracemalloc.start()
    try:
        events, errors = _read(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert [event.data for event in events] == [{"i": 0}]
    assert [error.line_number for error in errors] == [2]
    assert f"line of {size - len(good)} bytes" in errors[0].problem
    # A few times the line limit (buffers, readline's joins), not the 200 MB line.
    assert peak < 8 * MAX_LINE_BYTES, f"peak {peak} bytes"


@pytest.mark.parametrize("kind", ["directory", "fifo", "character device"])
def test_only_regular_files_are_read(kind: str, tmp_path: Path) -> None:
    path = {"directory": tmp_path, "character device": Path("/dev/zero")}.get(kind)
    if path is None:
        path = tmp_path / "events.jsonl"
        os.mkfifo(path)
    failures: list[BaseException] = []

    def read() -> None:
        try:
            list(read_log(path))
        except BaseException as error:
            failures.append(error)

    # A thread, so that a reader blocked on the FIFO fails the test instead of hanging it.
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)

    assert not reader.is_alive(), f"reading {path} blocked"
    [error] = failures
    assert isinstance(error, NotRegularFileError)
    assert str(error) == f"not a regular file: a {kind.replace('fifo', 'FIFO')}"


def test_a_link_to_a_log_is_read(tmp_path: Path) -> None:
    target = tmp_path / "real.jsonl"
    target.write_text(_good_line(i=0) + "\n")
    link = tmp_path / "events.jsonl"
    link.symlink_to(target)

    assert [event.data for event in read_log(link)] == [{"i": 0}]
