"""SIGTERM during a run that exports over OTLP: the run exits 143 within the shutdown bound
of instrumentation/otel/setup.py, and what the completed batch recorded (its `esper.batch`
trace with the `esper.ppo.update` span and its event) and the metrics reached the collector
(nothing is lost on SIGTERM)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from e2e_runs import ENDLESS, SHORT_RUN, Training, log_records
from receivers import GrpcReceiver, attributes_of

from app import telemetry
from app.cli import main
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
        if span.name == "esper.batch" and attributes_of(span.attributes).get("esper.batch") == 1
    ]
    assert batch.parent_span_id == b""
    updates = [
        span
        for span in spans
        if span.name == "esper.ppo.update" and span.parent_span_id == batch.span_id
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
    assert "esper.ppo.policy_loss" in metrics and "esper.events" in metrics, sorted(metrics)


def test_an_update_shown_on_the_console_reaches_otlp_when_sigterm_lands_between_sinks(
    tmp_path: Path, receiver: GrpcReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic form of the race: a real SIGTERM delivered right after the console
    printed the first PPO update, before the OTel sink got it (what an operator reacting
    to that line does). The run stops at the next epoch boundary, not mid-delivery."""

    class TerminatedAfterConsole(ConsoleSink):
        def emit(self, event: TelemetryEvent) -> None:
            super().emit(event)
            if event.event_type == EventType.PPO_UPDATE_COMPLETED:
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr("app.cli.ConsoleSink", TerminatedAfterConsole)
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
