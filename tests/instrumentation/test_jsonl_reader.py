from __future__ import annotations

import json
import math
import os
import threading
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import read_log

from app.contracts.events import EventType, TelemetryEvent
from instrumentation.jsonl_reader import (
    MAX_DEPTH,
    MAX_LINE_BYTES,
    LoggedEvent,
    LogLineError,
    NoLogError,
    NotRegularFileError,
    read_logged_events,
    read_run_events,
    run_log_sets,
)
from instrumentation.sinks.jsonl import JsonlSink
from instrumentation.sinks.strict_json import strict_json_text


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


# Runs of several processes: one log set per rank, merged by timestamp.

START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _epoch_event(env_id: int, seconds: float) -> TelemetryEvent:
    return TelemetryEvent(
        EventType.EPOCH_COMPLETED,
        data={"env_id": env_id},
        epoch=1,
        timestamp=START + timedelta(seconds=seconds),
    )


def _rank_line(event: TelemetryEvent, rank: int | None) -> str:
    """The line a rank's JSONL sink writes for event (`rank` after the contract keys)."""
    record = event.to_record() if rank is None else {**event.to_record(), "rank": rank}
    return strict_json_text(record) + "\n"


def _write(path: Path, events: list[TelemetryEvent], rank: int | None) -> None:
    path.write_text("".join(_rank_line(event, rank) for event in events))


def _touch(directory: Path, *names: str) -> None:
    for name in names:
        (directory / name).touch()


def test_a_run_directory_lists_every_ranks_set_in_rank_order(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        *("events.jsonl", "events.jsonl.1", "events-rank1.jsonl", "events-rank1.jsonl.1"),
        *("events-rank1.jsonl.2", "events-rank2.jsonl", "events-rank10.jsonl"),
        # Not logs of a rank: rank 0 is events.jsonl, and only numbered rotations count.
        *("events-rank0.jsonl", "events-rankx.jsonl", "events.jsonl.bak", "run.json"),
    )

    assert run_log_sets(tmp_path) == [
        [tmp_path / "events.jsonl.1", tmp_path / "events.jsonl"],
        [tmp_path / f"events-rank1.jsonl{suffix}" for suffix in (".2", ".1", "")],
        [tmp_path / "events-rank2.jsonl"],
        [tmp_path / "events-rank10.jsonl"],
    ]


@pytest.mark.parametrize("name", ["events.jsonl", "events-rank1.jsonl"])
def test_a_ranks_log_beside_other_ranks_logs_stands_for_the_whole_run(
    name: str, tmp_path: Path
) -> None:
    _touch(tmp_path, "events.jsonl", "events-rank1.jsonl", "events-rank1.jsonl.1", "run.json")

    assert run_log_sets(tmp_path / name) == [
        [tmp_path / "events.jsonl"],
        [tmp_path / "events-rank1.jsonl.1", tmp_path / "events-rank1.jsonl"],
    ]


def test_a_single_process_log_is_one_set_with_its_rotated_files(tmp_path: Path) -> None:
    _touch(tmp_path, "events.jsonl", "events.jsonl.2", "events.jsonl.1", "run.json")
    expected = [[tmp_path / f"events.jsonl{suffix}" for suffix in (".2", ".1", "")]]

    assert run_log_sets(tmp_path / "events.jsonl") == expected
    assert run_log_sets(tmp_path) == expected


def test_a_log_of_another_name_is_read_alone_with_its_rotated_files(tmp_path: Path) -> None:
    _touch(tmp_path, "events.jsonl", "events-rank1.jsonl", "old.jsonl", "old.jsonl.1")

    assert run_log_sets(tmp_path / "old.jsonl") == [
        [tmp_path / "old.jsonl.1", tmp_path / "old.jsonl"]
    ]


def test_a_missing_rank_log_is_listed_for_the_reader_to_report(tmp_path: Path) -> None:
    _touch(tmp_path, "events.jsonl")
    missing = tmp_path / "events-rank1.jsonl"

    assert run_log_sets(missing) == [[missing]]


def test_a_rank_whose_newest_file_is_missing_keeps_its_rotated_files(tmp_path: Path) -> None:
    # Rotation renamed events-rank1.jsonl away, then the disk refused the next file.
    _touch(tmp_path, "events.jsonl", "events-rank1.jsonl.1")

    assert run_log_sets(tmp_path) == [
        [tmp_path / "events.jsonl"],
        [tmp_path / "events-rank1.jsonl.1"],
    ]


@pytest.mark.parametrize("contents", [(), ("run.json", "notes.txt", "events-rank0.jsonl")])
def test_a_directory_without_a_log_is_an_error_naming_it(
    contents: tuple[str, ...], tmp_path: Path
) -> None:
    _touch(tmp_path, *contents)

    with pytest.raises(NoLogError) as raised:
        run_log_sets(tmp_path)

    assert str(raised.value) == (
        f"no event log in {tmp_path} (expected events.jsonl or events-rank<N>.jsonl)"
    )


def test_ranks_merge_in_timestamp_order_each_event_with_its_rank(tmp_path: Path) -> None:
    rank0 = [_epoch_event(0, 1.0), _epoch_event(1, 1.1), _epoch_event(0, 2.0)]
    rank1 = [_epoch_event(2, 0.5), _epoch_event(3, 1.05), _epoch_event(2, 3.0)]
    _write(tmp_path / "events.jsonl", rank0, rank=0)
    _write(tmp_path / "events-rank1.jsonl", rank1, rank=1)

    merged = list(read_run_events(run_log_sets(tmp_path)))

    expected = [(rank1[0], 1), (rank0[0], 0), (rank1[1], 1), (rank0[1], 0), (rank0[2], 0)]
    expected.append((rank1[2], 1))
    assert [(logged.event, logged.rank) for logged in merged] == expected


def test_equal_timestamps_keep_rank_order_and_each_rank_keeps_its_file_order(
    tmp_path: Path,
) -> None:
    # A clock stepped back on rank 1: its lines still come in the order it wrote them.
    rank0 = [_epoch_event(0, 1.0), _epoch_event(0, 2.0)]
    rank1 = [_epoch_event(2, 1.0), _epoch_event(2, 3.0), _epoch_event(3, 0.5)]
    _write(tmp_path / "events.jsonl", rank0, rank=0)
    _write(tmp_path / "events-rank1.jsonl", rank1, rank=1)

    merged = [logged.event for logged in read_run_events(run_log_sets(tmp_path))]

    assert merged == [rank0[0], rank1[0], rank0[1], rank1[1], rank1[2]]


def test_a_ranks_rotated_set_is_read_oldest_file_first_within_the_merge(tmp_path: Path) -> None:
    rank0 = [_epoch_event(0, second) for second in (1, 3, 5)]
    rank1 = [_epoch_event(2, second) for second in (2, 4, 6)]
    _write(tmp_path / "events.jsonl", rank0, rank=0)
    _write(tmp_path / "events-rank1.jsonl.2", rank1[:1], rank=1)
    _write(tmp_path / "events-rank1.jsonl.1", rank1[1:2], rank=1)
    _write(tmp_path / "events-rank1.jsonl", rank1[2:], rank=1)

    merged = [logged.event for logged in read_run_events(run_log_sets(tmp_path))]

    assert merged == [rank0[0], rank1[0], rank0[1], rank1[1], rank0[2], rank1[2]]


def test_files_are_opened_only_when_the_merge_reaches_them(tmp_path: Path) -> None:
    rank0 = [_epoch_event(0, 1.0), _epoch_event(0, 3.0)]
    rank1 = _epoch_event(2, 2.0)
    _write(tmp_path / "events.jsonl.1", rank0[:1], rank=0)
    _write(tmp_path / "events.jsonl", [], rank=0)
    _write(tmp_path / "events-rank1.jsonl", [rank1], rank=1)
    merged = read_run_events(run_log_sets(tmp_path))

    first = next(merged)
    # Written after the merge started, before it needed rank 0's newest file.
    _write(tmp_path / "events.jsonl", rank0[1:], rank=0)

    assert [first.event, *(logged.event for logged in merged)] == [rank0[0], rank1, rank0[1]]


def test_bad_lines_of_a_merged_run_are_reported_with_their_file_and_line(
    tmp_path: Path,
) -> None:
    rank0, rank1 = [_epoch_event(0, 1.0)], [_epoch_event(2, 0.5), _epoch_event(2, 2.0)]
    _write(tmp_path / "events.jsonl", rank0, rank=0)
    log1 = tmp_path / "events-rank1.jsonl"
    log1.write_text(_rank_line(rank1[0], 1) + "not json\n" + _rank_line(rank1[1], 1))
    errors: list[LogLineError] = []

    merged = [logged.event for logged in read_run_events(run_log_sets(tmp_path), errors.append)]

    assert merged == [rank1[0], rank0[0], rank1[1]]
    assert [(error.path, error.line_number) for error in errors] == [(log1, 2)]


@pytest.mark.parametrize(
    ("line_rank", "expected"), [(None, None), (3, 3), (True, None), ("1", None), (1.0, None)]
)
def test_rank_is_read_when_the_line_has_an_integer_rank(
    line_rank: object, expected: int | None, tmp_path: Path
) -> None:
    event = _epoch_event(0, 1.0)
    record = event.to_record() | ({} if line_rank is None else {"rank": line_rank})
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(record) + "\n")

    assert list(read_logged_events(path)) == [LoggedEvent(event, rank=expected)]


def test_the_legacy_log_has_no_rank(legacy_log: Path) -> None:
    assert {logged.rank for logged in read_run_events(run_log_sets(legacy_log))} == {None}
