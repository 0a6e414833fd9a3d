"""SIGTERM during a run that exports over OTLP: the run exits 143 within the shutdown bound
of instrumentation/otel/session.py, and what the completed batch recorded (its `esper.batch`
trace with the `esper.ppo.update` span and its event) and the metrics reached the collector
(nothing is lost on SIGTERM). A second Ctrl-C while the export waits on a
collector that never answers ends the wait: the log is whole, the summary says so."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from e2e_runs import ENDLESS, SHORT_RUN, Training, count_of, log_records
from receivers import BlackHole, GrpcReceiver, attributes_of

from app import telemetry
from app.cli import main
from app.contracts import telemetry_names as names
from app.contracts.events import EventType, TelemetryEvent, TelemetryLevel
from instrumentation.otel import DEFAULT_SHUTDOWN_TIMEOUT_S
from instrumentation.sinks import ConsoleSink

SLACK_S = 5.0


@pytest.fixture
def receiver() -> Iterator[GrpcReceiver]:
    server = GrpcReceiver().start()
    yield server
    server.stop()


def first_update(receiver: GrpcReceiver) -> tuple[Any, Any]:
    """The exported `esper.batch` span of batch 1 and its one `esper.ppo.update` child."""
    spans = receiver.spans()
    (batch,) = [
        span
        for span in spans
        if span.name == names.BATCH_SPAN and attributes_of(span.attributes).get(names.BATCH) == 1
    ]
    assert batch.parent_span_id == b""
    updates = [
        span
        for span in spans
        if span.name == names.UPDATE_SPAN and span.parent_span_id == batch.span_id
    ]
    assert len(updates) == 1, sorted(span.name for span in spans)
    assert updates[0].trace_id == batch.trace_id
    return batch, updates[0]


@pytest.mark.slow
def test_sigterm_after_the_first_update_flushes_its_batch_within_the_bound(
    tmp_path: Path, receiver: GrpcReceiver, training: list[Training]
) -> None:
    telemetry_dir = tmp_path / "telemetry"
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    run = Training([*SHORT_RUN, *ENDLESS, "--telemetry-dir", str(telemetry_dir)], tmp_path, otel)
    training.append(run)
    # Signal the moment the update is shown: the run must still deliver it everywhere.
    run.wait_for_line("ppo update: batch=1 ", timeout=120)
    signalled = time.perf_counter()
    run.process.send_signal(signal.SIGTERM)
    code = run.wait(timeout=DEFAULT_SHUTDOWN_TIMEOUT_S + 60)
    exit_s = time.perf_counter() - signalled

    assert code == 143, run.stderr
    assert "esper: training terminated (SIGTERM)" in run.stderr
    assert exit_s <= DEFAULT_SHUTDOWN_TIMEOUT_S + SLACK_S, f"exit took {exit_s:.1f}s"

    _batch, update = first_update(receiver)
    assert "esper.ppo_update_completed" in [event.name for event in update.events]
    # The JSONL record of that update names the exported span.
    (logged,) = [
        record
        for record in log_records(telemetry_dir)
        if record["event_type"] == "PPO_UPDATE_COMPLETED" and record["data"]["batch"] == 1
    ]
    assert (logged["trace_id"], logged["span_id"]) == (update.trace_id.hex(), update.span_id.hex())
    # Metrics too: with the default 60 s interval only the shutdown flush exports them.
    metrics = receiver.metrics()
    assert "esper.ppo.policy_loss" in metrics and names.EVENTS in metrics, sorted(metrics)


def test_an_update_shown_on_the_console_reaches_otlp_when_sigterm_lands_between_sinks(
    tmp_path: Path, receiver: GrpcReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic form of the race: a real SIGTERM delivered right after the console
    printed the first PPO update, before the OTel sink's metrics got it (what an operator
    reacting to that line does). The run stops at the next epoch boundary, not
    mid-delivery."""

    class TerminatedAfterConsole(ConsoleSink):
        def deliver(self, event: TelemetryEvent, captured: object) -> None:
            super().deliver(event, captured)
            if event.event_type == EventType.PPO_UPDATE_COMPLETED:
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr("app.cli.train.ConsoleSink", TerminatedAfterConsole)
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    threads, handler = torch.get_num_threads(), telemetry.event_handler()
    try:
        code = main(["train", *SHORT_RUN, *ENDLESS, "--telemetry-dir", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
        telemetry.set_event_handler(handler)
        telemetry.set_level(TelemetryLevel.NORMAL)

    assert code == 143
    _batch, update = first_update(receiver)
    assert "esper.ppo_update_completed" in [event.name for event in update.events]
    assert "esper.ppo.policy_loss" in receiver.metrics()


def _log_open(pid: int) -> bool:
    """The child holds its events.jsonl open (it closes it when the hub closes)."""
    links = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            links.append(fd.readlink().name)
        except OSError:
            continue  # closed meanwhile
    return "events.jsonl" in links


def stopped_by_ctrl_c(tmp_path: Path, black_hole: BlackHole, again: bool) -> tuple[float, str]:
    """A run exporting to `black_hole`, stopped by Ctrl-C after its first update; with
    `again`, a second Ctrl-C once the log is closed, when the run waits on the export.
    Returns the seconds from the log's closing to the exit, and stderr."""
    tmp_path.mkdir()
    telemetry_dir = tmp_path / "telemetry"
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": black_hole.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    }
    run = Training([*SHORT_RUN, *ENDLESS, "--telemetry-dir", str(telemetry_dir)], tmp_path, otel)
    try:
        run.wait_for_line("ppo update: batch=1 ", timeout=120)
        assert _log_open(run.process.pid)
        run.process.send_signal(signal.SIGINT)
        run.wait_for_line("esper: stopping after this epoch", timeout=30)
        deadline = time.monotonic() + 60
        while _log_open(run.process.pid):
            assert time.monotonic() < deadline, run.stderr
            time.sleep(0.002)
        closed = time.perf_counter()
        if again:
            run.process.send_signal(signal.SIGINT)
        code = run.wait(timeout=DEFAULT_SHUTDOWN_TIMEOUT_S + 60)
        after_close_s = time.perf_counter() - closed
    finally:
        run.stop()
    err = run.stderr
    assert code == 130, err
    assert "esper: training interrupted (Ctrl-C)" in err
    # The log is whole: every line parses, and every epoch the run counted is in it.
    records = log_records(telemetry_dir)
    epochs = count_of(records, "EPOCH_COMPLETED")
    assert f"EPOCH_COMPLETED={epochs}," in err, err
    assert records[-1]["event_type"] in {"EPOCH_COMPLETED", "PPO_UPDATE_COMPLETED"}
    assert count_of(records, "PPO_UPDATE_COMPLETED") >= 1
    return after_close_s, err


@pytest.mark.slow
def test_a_second_ctrl_c_cuts_the_export_wait_short_and_keeps_the_log_whole(
    tmp_path: Path,
) -> None:
    black_hole = BlackHole()
    try:
        waited_s, waited = stopped_by_ctrl_c(tmp_path / "once", black_hole, again=False)
        cut_s, cut = stopped_by_ctrl_c(tmp_path / "twice", black_hole, again=True)
    finally:
        black_hole.stop()
    # Without the second Ctrl-C the run waits on the collector up to the bound.
    assert waited_s >= DEFAULT_SHUTDOWN_TIMEOUT_S / 2, f"exit {waited_s:.1f}s after the log closed"
    assert "cut short" not in waited
    # With it, the run ends well before the bound.
    assert cut_s <= min(waited_s, DEFAULT_SHUTDOWN_TIMEOUT_S) / 2, (
        f"{cut_s:.1f}s vs {waited_s:.1f}s"
    )
    assert (
        "  cut short: the OpenTelemetry export, by Ctrl-C; spans and metrics not yet sent are "
        "lost\n" in cut
    )
    assert "Traceback" not in cut
    # What the cut-short export had not sent is counted, not reported as "none lost".
    (export,) = [line for line in cut.splitlines() if line.startswith("  export:")]
    assert "lost (export cut short by a signal" in export, export
    (waited_export,) = [line for line in waited.splitlines() if line.startswith("  export:")]
    assert "cut short" not in waited_export, waited_export
