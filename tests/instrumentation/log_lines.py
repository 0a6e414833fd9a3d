"""Shared by the JSONL sink's rotation and full-disk tests: events of a chosen size, the
bytes the sink writes for them, and a log set read back with every line checked to be a
complete strict-JSON object. (Not in conftest.py: a test imports these by name.)"""

from __future__ import annotations

import json
from pathlib import Path

from app.contracts.events import EventType, TelemetryEvent
from instrumentation.jsonl_reader import log_files
from instrumentation.sinks.jsonl import JsonlSink
from instrumentation.sinks.strict_json import to_strict_json


def sized_event(index: int, padding: int) -> TelemetryEvent:
    return TelemetryEvent(EventType.EPOCH_COMPLETED, data={"i": index, "pad": "x" * padding})


def written_line(event: TelemetryEvent) -> bytes:
    """The bytes the sink writes for event (no span ids)."""
    return (json.dumps(to_strict_json(event.to_record()), allow_nan=False) + "\n").encode()


def reject_constant(name: str) -> None:
    raise ValueError(f"non-strict JSON constant {name}")


def strict_lines(path: Path) -> list[bytes]:
    """The file's lines, each checked to be a complete strict-JSON object."""
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), f"{path.name}: the last line is cut"
    lines = raw.splitlines(keepends=True)
    for line in lines:
        assert isinstance(json.loads(line, parse_constant=reject_constant), dict)
    return lines


def set_lines(sink: JsonlSink) -> list[bytes]:
    """Every line of the sink's log set, oldest file first."""
    return [line for path in log_files(sink.path) for line in strict_lines(path)]
