"""The signal flow of `esper train` (app/interrupts.py), with real signals sent to this
process: what each phase does with Ctrl-C and SIGTERM, and the export wait and the report
they cut."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from app.interrupts import StopRequest, Terminated


def send(signum: int) -> None:
    """Deliver `signum` to this process; its handler runs before this returns."""
    os.kill(os.getpid(), signum)
    time.sleep(0.01)  # the handler runs at the next bytecode boundary of the main thread


def send_soon(signum: int, after_s: float) -> threading.Thread:
    sender = threading.Thread(target=lambda: (time.sleep(after_s), os.kill(os.getpid(), signum)))
    sender.start()
    return sender


@pytest.mark.parametrize(
    ("signum", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)]
)
def test_during_start_up_a_signal_unwinds_at_once(signum: int, raised: type) -> None:
    stop = StopRequest()
    with stop.installed(), pytest.raises(raised):
        send(signum)


def test_during_training_the_first_signal_waits_for_the_boundary_and_the_second_does_not(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stop = StopRequest()
    with stop.installed():
        stop.start_training()
        send(signal.SIGINT)
        assert "stopping after this epoch" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            stop.raise_if_requested()
        with pytest.raises(Terminated):
            send(signal.SIGTERM)
    # "At once": the export is not waited for either.
    started = threading.Event()
    assert stop.wait_for_export(lambda: started.set() or True) is None
    assert not started.is_set()
    assert stop.exit_code(143) == 143


def test_while_flushing_a_signal_is_noted_and_the_export_is_skipped() -> None:
    stop = StopRequest()
    with stop.installed():
        stop.start_training()
        stop.flushing()
        send(signal.SIGTERM)  # does not raise: the log is being closed
        called = []
        assert stop.wait_for_export(lambda: called.append(1) or True) is None
    assert called == []
    assert stop.summary_lines() == [
        "  cut short: the OpenTelemetry export, by SIGTERM; spans and metrics not yet sent are lost"
    ]
    assert stop.exit_code(0) == 143


def test_a_signal_during_the_export_wait_ends_it() -> None:
    stop = StopRequest()
    release = threading.Event()
    with stop.installed():
        stop.start_training()
        stop.flushing()
        sender = send_soon(signal.SIGINT, 0.2)
        started = time.perf_counter()
        assert stop.wait_for_export(lambda: release.wait(60)) is None
        waited = time.perf_counter() - started
        sender.join()
        send(signal.SIGINT)  # after the wait: noted, never raised
    release.set()
    assert waited < 30, f"the wait lasted {waited:.1f}s"
    assert stop.cut_short_by == signal.SIGINT
    assert stop.exit_code(0) == 130 and stop.exit_code(143) == 143
    assert "by Ctrl-C" in stop.summary_lines()[0]


def test_an_export_wait_without_signals_returns_the_shutdown_result_once() -> None:
    stop = StopRequest()
    with stop.installed():
        stop.start_training()
        stop.flushing()
        assert stop.wait_for_export(lambda: False) is False
        assert stop.wait_for_export(lambda: True) is None  # waited already
    assert stop.summary_lines() == []
    assert stop.exit_code(0) == 0


def test_handlers_are_restored_and_file_size_signals_ignored_inside() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGXFSZ)}
    stop = StopRequest()
    with stop.installed():
        assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) == stop.handle
    assert {s: signal.getsignal(s) for s in before} == before


def test_an_error_of_the_shutdown_reaches_the_waiting_thread() -> None:
    def failing() -> bool:
        raise RuntimeError("exporter broke")

    stop = StopRequest()
    with stop.installed(), pytest.raises(RuntimeError, match="exporter broke"):
        stop.wait_for_export(failing)


def test_a_signal_during_the_report_stops_it_once_and_sets_the_exit_code() -> None:
    stop = StopRequest()
    with stop.installed():
        stop.start_training()
        stop.flushing()
        assert stop.wait_for_export(lambda: True) is True
        send(signal.SIGINT)  # after the export, before the report: ignored
        with pytest.raises(KeyboardInterrupt), stop.reporting():
            send(signal.SIGINT)
            raise AssertionError("the report went on after the signal")
        send(signal.SIGTERM)  # once stopped, the summary is not cut short
    assert stop.report_stopped_by == signal.SIGINT
    assert stop.summary_lines() == []  # the export was whole
    assert stop.exit_code(0) == 130 and stop.exit_code(3) == 130 and stop.exit_code(143) == 143


def test_a_report_without_signals_keeps_the_runs_exit_code() -> None:
    stop = StopRequest()
    with stop.installed():
        stop.start_training()
        stop.flushing()
        stop.wait_for_export(lambda: True)
        with stop.reporting():
            pass
        send(signal.SIGINT)  # after the report: ignored
    assert stop.report_stopped_by is None
    assert stop.exit_code(0) == 0 and stop.exit_code(3) == 3


def test_a_signal_that_cut_the_export_short_stops_the_report_before_it_starts() -> None:
    stop = StopRequest()
    with stop.installed():
        stop.start_training()
        stop.flushing()
        send(signal.SIGTERM)  # noted while flushing: the export is skipped
        stop.wait_for_export(lambda: True)
        started = []
        with pytest.raises(Terminated), stop.reporting():
            started.append(1)
    assert started == []
    assert stop.report_stopped_by == signal.SIGTERM
    assert stop.exit_code(0) == 143
