from __future__ import annotations

import logging

import pytest

from app import telemetry
from app.contracts.events import EventType, TelemetryEvent
from instrumentation.hub import TelemetryHub, installed


class RecordingSink:
    def __init__(self, name: str = "recording") -> None:
        self.name = name
        self.events: list[TelemetryEvent] = []
        self.flushes = 0
        self.closes = 0

    def emit(self, event: TelemetryEvent) -> None:
        self.events.append(event)

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closes += 1


class FailingSink(RecordingSink):
    """Raises on every call, after recording that it was called."""

    def emit(self, event: TelemetryEvent) -> None:
        super().emit(event)
        raise OSError("disk on fire")

    def flush(self) -> None:
        super().flush()
        raise OSError("disk on fire")

    def close(self) -> None:
        super().close()
        raise OSError("disk on fire")


def _event(event_type: EventType = EventType.EPOCH_COMPLETED) -> TelemetryEvent:
    return TelemetryEvent(event_type, data={"epoch": 1})


def test_a_failing_sink_does_not_stop_the_others() -> None:
    before, after = RecordingSink("before"), RecordingSink("after")
    failing = FailingSink("failing")
    hub = TelemetryHub([before, failing, after])
    events = [_event() for _ in range(5)]

    for event in events:
        hub.emit(event)

    assert before.events == events
    assert after.events == events
    assert failing.events == events
    assert hub.sink_errors == {"failing": 5}


def test_sink_errors_is_read_only() -> None:
    hub = TelemetryHub([FailingSink("failing")])
    hub.emit(_event())

    with pytest.raises(TypeError):
        hub.sink_errors["failing"] = 0  # type: ignore[index]


class DroppingSink(RecordingSink):
    """Loses every other event without raising, and counts it, as a full disk makes the
    JSONL sink do."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.dropped = 0

    def emit(self, event: TelemetryEvent) -> None:
        if (len(self.events) + self.dropped) % 2:
            self.dropped += 1
        else:
            super().emit(event)


def test_sink_errors_add_what_a_sink_dropped_to_its_failed_calls() -> None:
    class FailingAndDropping(DroppingSink):
        def close(self) -> None:
            raise OSError("disk on fire")

    dropping, both = DroppingSink("dropping"), FailingAndDropping("both")
    hub = TelemetryHub([dropping, both, RecordingSink("healthy")])

    for _ in range(6):
        hub.emit(_event())
    hub.close()

    assert dropping.dropped == both.dropped == 3
    assert hub.sink_errors == {"dropping": 3, "both": 4}


def test_first_failure_is_a_warning_with_traceback_later_ones_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = TelemetryHub([FailingSink("failing")])

    with caplog.at_level(logging.DEBUG, logger="instrumentation.hub"):
        for _ in range(3):
            hub.emit(_event())

    levels = [record.levelno for record in caplog.records]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert caplog.records[0].exc_info is not None
    assert "failing" in caplog.records[0].getMessage()


def test_flush_and_close_reach_every_sink_despite_failures() -> None:
    failing, healthy = FailingSink("failing"), RecordingSink("healthy")
    hub = TelemetryHub([failing, healthy])

    hub.flush()
    hub.close()

    assert (failing.flushes, failing.closes) == (1, 1)
    assert (healthy.flushes, healthy.closes) == (1, 1)
    assert hub.sink_errors == {"failing": 2}


def test_close_is_idempotent_and_emit_after_close_is_a_no_op() -> None:
    sink = RecordingSink()
    hub = TelemetryHub([sink])

    hub.close()
    hub.close()
    hub.emit(_event())
    hub.flush()

    assert hub.closed
    assert sink.closes == 1
    assert sink.events == []
    assert sink.flushes == 0
    assert hub.emitted == 0


def test_counts_events_by_type() -> None:
    hub = TelemetryHub([FailingSink("failing")])
    for event_type in (
        EventType.PPO_UPDATE_COMPLETED,
        EventType.EPOCH_COMPLETED,
        EventType.PPO_UPDATE_COMPLETED,
    ):
        hub.emit(_event(event_type))

    assert hub.emitted == 3
    assert hub.events_by_type == {
        EventType.PPO_UPDATE_COMPLETED: 2,
        EventType.EPOCH_COMPLETED: 1,
    }


def test_add_sink_receives_later_events_and_is_refused_after_close() -> None:
    hub = TelemetryHub()
    hub.emit(_event())
    late = RecordingSink("late")
    hub.add_sink(late)
    hub.emit(_event())
    hub.close()

    assert len(late.events) == 1
    assert hub.sinks == (late,)
    with pytest.raises(RuntimeError, match="closed"):
        hub.add_sink(RecordingSink())


def test_a_sink_that_emits_while_handling_an_event_does_not_deadlock() -> None:
    hub = TelemetryHub()

    class EchoSink(RecordingSink):
        def emit(self, event: TelemetryEvent) -> None:
            super().emit(event)
            if event.event_type is EventType.COMMAND_FAILED:
                hub.emit(_event(EventType.MEMORY_WARNING))

    echo = EchoSink()
    hub.add_sink(echo)
    hub.emit(_event(EventType.COMMAND_FAILED))

    assert [event.event_type for event in echo.events] == [
        EventType.COMMAND_FAILED,
        EventType.MEMORY_WARNING,
    ]


def test_installed_routes_app_telemetry_then_uninstalls_and_closes() -> None:
    sink = RecordingSink()
    hub = TelemetryHub([sink])

    with pytest.raises(SystemExit), installed(hub):
        telemetry.emit(_event(EventType.PPO_UPDATE_COMPLETED))
        raise SystemExit(143)
    telemetry.emit(_event(EventType.PPO_UPDATE_COMPLETED))

    assert len(sink.events) == 1
    assert sink.closes == 1
    assert hub.closed
