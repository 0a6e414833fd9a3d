from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.contracts.events import RECORD_KEYS, EventType, TelemetryEvent
from instrumentation.sinks.jsonl import JsonlSink
from instrumentation.sinks.run_directory import create_run_directory

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


def _event(**data: object) -> TelemetryEvent:
    return TelemetryEvent(EventType.PPO_UPDATE_COMPLETED, data=dict(data))


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-strict JSON constant {name}")


def _strict_records(path: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line, parse_constant=_reject_constant)
        for line in path.read_text(encoding="ascii").splitlines()
    ]


def test_rewrites_the_legacy_log_byte_for_byte(legacy_log: Path, tmp_path: Path) -> None:
    expected = legacy_log.read_bytes()
    events = [
        TelemetryEvent.from_record(json.loads(line)) for line in expected.decode().splitlines()
    ]
    sink = JsonlSink(tmp_path)

    for event in events:
        sink.emit(event)
    sink.close()

    assert len(events) == 170
    assert sink.path.read_bytes() == expected


def test_non_finite_floats_become_strings_even_when_nested(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path)
    sink.emit(
        _event(
            ratio_max=math.inf,
            ratio_min=-math.inf,
            policy_loss=math.nan,
            layers={"fc1": {"grad_norm": math.nan}, "norms": [1.5, math.inf, (math.nan,)]},
        )
    )
    sink.close()

    (record,) = _strict_records(sink.path)
    assert record["data"] == {
        "ratio_max": "Infinity",
        "ratio_min": "-Infinity",
        "policy_loss": "NaN",
        "layers": {"fc1": {"grad_norm": "NaN"}, "norms": [1.5, "Infinity", ["NaN"]]},
    }


def test_unknown_objects_are_written_with_str_and_numbers_stay_numbers(tmp_path: Path) -> None:
    class Blueprint:
        def __str__(self) -> str:
            return "conv_light"

    sink = JsonlSink(tmp_path)
    sink.emit(_event(blueprint=Blueprint(), steps={1: 2}, when=datetime(2025, 1, 1, tzinfo=UTC)))
    sink.close()

    (record,) = _strict_records(sink.path)
    assert record["data"] == {
        "blueprint": "conv_light",
        "steps": {"1": 2},
        "when": "2025-01-01 00:00:00+00:00",
    }


def test_keys_follow_the_contract_then_span_ids_when_recording(tmp_path: Path) -> None:
    ids: list[tuple[str, str] | None] = [(TRACE_ID, SPAN_ID), None]
    sink = JsonlSink(tmp_path / "a", context_provider=lambda: ids.pop(0))
    sink.emit(_event(batch=1))
    sink.emit(_event(batch=2))
    sink.close()

    inside, outside = _strict_records(sink.path)
    assert list(inside) == [*RECORD_KEYS, "trace_id", "span_id"]
    assert (inside["trace_id"], inside["span_id"]) == (TRACE_ID, SPAN_ID)
    assert list(outside) == list(RECORD_KEYS)


def test_run_directory_is_named_by_utc_second_and_never_shared(tmp_path: Path) -> None:
    started = datetime(2025, 12, 6, 0, 42, 14, tzinfo=UTC)
    telemetry_dir = tmp_path / "nested" / "telemetry"

    names = [create_run_directory(telemetry_dir, started).path.name for _ in range(3)]

    assert names == [
        "telemetry_2025-12-06_004214",
        "telemetry_2025-12-06_004214_1",
        "telemetry_2025-12-06_004214_2",
    ]


def test_two_sinks_started_together_write_to_different_files(tmp_path: Path) -> None:
    first, second = JsonlSink(tmp_path), JsonlSink(tmp_path)

    assert first.path != second.path
    assert first.path.name == "events.jsonl"
    assert re.fullmatch(r"telemetry_\d{4}-\d{2}-\d{2}_\d{6}", first.path.parent.name)
    first.close()
    second.close()


def test_lines_are_buffered_until_the_buffer_fills_or_flush(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path, buffer_events=4)

    for batch in range(3):
        sink.emit(_event(batch=batch))
    assert sink.path.read_bytes() == b""

    sink.emit(_event(batch=3))
    assert len(sink.path.read_bytes().splitlines()) == 4

    sink.emit(_event(batch=4))
    assert len(sink.path.read_bytes().splitlines()) == 4
    sink.flush()
    assert len(sink.path.read_bytes().splitlines()) == 5


def test_close_writes_everything_and_later_emits_fail_loudly(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path)
    for batch in range(10):
        sink.emit(_event(batch=batch))

    sink.close()
    sink.close()

    assert [record["data"] for record in _strict_records(sink.path)] == [
        {"batch": batch} for batch in range(10)
    ]
    with pytest.raises(RuntimeError, match="closed"):
        sink.emit(_event(batch=10))


def test_buffer_events_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="buffer_events"):
        JsonlSink(tmp_path, buffer_events=0)


# The child emits as fast as a training loop would, with the CLI's signal handling, and
# reports the last event whose emit returned; the parent interrupts it mid-stream.
_CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    from app.contracts.events import EventType, TelemetryEvent
    from instrumentation.hub import TelemetryHub
    from instrumentation.sinks.jsonl import JsonlSink

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    hub = TelemetryHub([JsonlSink(Path(sys.argv[1]), buffer_events=64)])
    last_done = -1
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            hub.emit(TelemetryEvent(EventType.EPOCH_COMPLETED, data={"n": last_done + 1}))
            last_done += 1
            if last_done == 100:
                print("ready", flush=True)
            elif last_done > 100:
                time.sleep(0.0002)
    finally:
        hub.close()
        print(last_done, flush=True)
    """
)


@pytest.mark.parametrize(
    ("signum", "returncode"),
    [(signal.SIGTERM, 143), (signal.SIGINT, -signal.SIGINT)],
    ids=["SIGTERM", "SIGINT"],
)
def test_an_interrupted_run_keeps_every_emitted_event(
    tmp_path: Path, signum: signal.Signals, returncode: int
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        child.send_signal(signum)
        out, err = child.communicate(timeout=10)
    finally:
        child.kill()

    assert child.returncode == returncode, err
    last_done = int(out.strip())
    (log,) = tmp_path.glob("telemetry_*/events.jsonl")
    content = log.read_bytes()
    assert content.endswith(b"\n")
    numbers = [record["data"]["n"] for record in _strict_records(log)]
    # Every event whose emit returned is there, in order, at most one more (the one in
    # flight when the signal landed), no duplicates.
    assert numbers == list(range(len(numbers)))
    assert last_done + 1 <= len(numbers) <= last_done + 2
    assert last_done >= 100
