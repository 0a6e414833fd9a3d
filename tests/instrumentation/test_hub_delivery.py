"""The hub's delivery thread: deferred sinks capture on the emitting thread and do their
work later, on another thread, in order; flush and close leave nothing behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from app.contracts.events import EventType, TelemetryEvent
from instrumentation.hub import TelemetryHub
from instrumentation.otel import current_span_ids
from instrumentation.sinks import JsonlSink


class DeferredRecorder:
    """A deferred sink that notes which thread each step ran on."""

    def __init__(self, name: str = "deferred", deliver_s: float = 0.0) -> None:
        self.name = name
        self.deliver_s = deliver_s
        self.captured_on: list[int] = []
        self.delivered: list[tuple[TelemetryEvent, object]] = []
        self.delivered_on: set[int] = set()
        self.calls: list[str] = []

    def emit(self, event: TelemetryEvent) -> None:
        self.deliver(event, self.capture(event))

    def capture(self, event: TelemetryEvent) -> object:
        self.captured_on.append(threading.get_ident())
        return event.data.get("n")

    def deliver(self, event: TelemetryEvent, captured: object) -> None:
        time.sleep(self.deliver_s)
        self.delivered.append((event, captured))
        self.delivered_on.add(threading.get_ident())
        self.calls.append("deliver")

    def flush(self) -> None:
        self.calls.append("flush")

    def close(self) -> None:
        self.calls.append("close")


class FailingCapture(DeferredRecorder):
    def capture(self, event: TelemetryEvent) -> object:
        raise OSError("no span today")


class FailingDeliver(DeferredRecorder):
    def deliver(self, event: TelemetryEvent, captured: object) -> None:
        raise OSError("disk on fire")


def _events(count: int) -> list[TelemetryEvent]:
    return [TelemetryEvent(EventType.EPOCH_COMPLETED, data={"n": n}) for n in range(count)]


def test_capture_runs_on_the_emitting_thread_and_delivery_in_order_on_another() -> None:
    sink = DeferredRecorder()
    hub = TelemetryHub([sink])
    events = _events(50)

    for event in events:
        hub.emit(event)
    hub.close()

    assert set(sink.captured_on) == {threading.get_ident()}
    assert threading.get_ident() not in sink.delivered_on
    assert sink.delivered == [(event, event.data["n"]) for event in events]
    assert sink.calls[-1] == "close"


def test_close_delivers_every_event_emitted_before_it_then_closes_once() -> None:
    sink = DeferredRecorder(deliver_s=0.002)
    hub = TelemetryHub([sink])

    for event in _events(40):
        hub.emit(event)
    hub.close()
    hub.close()

    assert len(sink.delivered) == 40
    assert sink.calls == ["deliver"] * 40 + ["close"]


def test_flush_waits_for_delivery_then_flushes() -> None:
    sink = DeferredRecorder(deliver_s=0.002)
    hub = TelemetryHub([sink])

    for event in _events(20):
        hub.emit(event)
    hub.flush()

    assert sink.calls == ["deliver"] * 20 + ["flush"]
    hub.close()


def test_emit_costs_the_emitting_thread_only_the_capture() -> None:
    slow = DeferredRecorder(deliver_s=0.005)
    events = _events(20)
    started = time.perf_counter()
    for event in events:
        slow.emit(event)
    synchronous = time.perf_counter() - started

    hub = TelemetryHub([DeferredRecorder(deliver_s=0.005)])
    started = time.perf_counter()
    for event in events:
        hub.emit(event)
    deferred = time.perf_counter() - started
    hub.close()

    assert deferred < synchronous / 10


def test_failed_captures_and_deliveries_are_counted_and_the_other_sinks_go_on() -> None:
    before, after = DeferredRecorder("before"), DeferredRecorder("after")
    hub = TelemetryHub([before, FailingCapture("capture"), FailingDeliver("deliver"), after])

    for event in _events(5):
        hub.emit(event)
    hub.close()

    assert len(before.delivered) == len(after.delivered) == 5
    assert hub.sink_errors == {"capture": 5, "deliver": 5}


def test_a_log_line_names_the_span_current_at_emit_though_it_ended_before_delivery(
    tmp_path: Path,
) -> None:
    tracer = TracerProvider().get_tracer("test")
    sink = JsonlSink(tmp_path, context_provider=current_span_ids)
    hub = TelemetryHub([sink])

    with tracer.start_as_current_span("esper.epoch") as span:
        hub.emit(_events(1)[0])
    hub.emit(_events(1)[0])  # no span: no ids
    hub.close()

    context = span.get_span_context()
    first, second = (json.loads(line) for line in sink.path.read_text().splitlines())
    assert (first["trace_id"], first["span_id"]) == (
        trace.format_trace_id(context.trace_id),
        trace.format_span_id(context.span_id),
    )
    assert "trace_id" not in second


# Delivery is slow, and Ctrl-C lands while `close` waits for it: the exception unwinds,
# and the process still ends with every event in the log.
_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from app.contracts.events import EventType, TelemetryEvent
    from instrumentation.hub import TelemetryHub
    from instrumentation.sinks.jsonl import JsonlSink

    class Slow:
        name = "slow"
        def emit(self, event): pass
        def capture(self, event): return None
        def deliver(self, event, captured): time.sleep(0.005)
        def flush(self): pass
        def close(self): pass

    hub = TelemetryHub([Slow(), JsonlSink(Path(sys.argv[1]), buffer_events=1000)])
    for n in range(400):
        hub.emit(TelemetryEvent(EventType.EPOCH_COMPLETED, data={"n": n}))
    print("closing", flush=True)
    hub.close()
    """
)


def test_a_close_cut_short_by_ctrl_c_still_writes_every_event(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "closing\n"
        time.sleep(0.2)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
    finally:
        child.kill()

    assert "KeyboardInterrupt" in err, "the signal landed while close waited"
    (log,) = tmp_path.glob("telemetry_*/events.jsonl")
    numbers = [json.loads(line)["data"]["n"] for line in log.read_text().splitlines()]
    assert numbers == list(range(400))


def test_a_slow_sink_makes_emit_wait_rather_than_queue_without_bound() -> None:
    sink = DeferredRecorder(deliver_s=0.002)
    hub = TelemetryHub([sink], max_pending=5)
    backlog: list[int] = []

    for emitted, event in enumerate(_events(30), start=1):
        hub.emit(event)
        backlog.append(emitted - len(sink.delivered))
    hub.close()

    assert max(backlog) <= 5, "at most max_pending events wait (one may be in delivery)"
    assert [event.data["n"] for event, _ in sink.delivered] == list(range(30)), "none lost"
