from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from app.contracts.events import EventType, TelemetryEvent
from instrumentation.jsonl_reader import LogLineError, read_events
from instrumentation.sinks.jsonl import JsonlSink


def _read(path: Path) -> tuple[list[TelemetryEvent], list[LogLineError]]:
    errors: list[LogLineError] = []
    events = list(read_events(path, on_error=errors.append))
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

    assert list(read_events(path)) == []
    assert "events.jsonl:1: invalid JSON" in caplog.text
