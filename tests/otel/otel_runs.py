"""Shared by the tests of tests/otel: the OTEL_* environment reset and one short training
run exported to an in-process OTLP receiver (a module, not conftest, so that test files
can import from it whatever conftest pytest loaded first)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from opentelemetry import trace
from prometheus_client import generate_latest
from receivers import GrpcReceiver, HttpReceiver, Received

from app.contracts import telemetry_names as names
from app.contracts.events import EventType, TelemetryEvent, TelemetryLevel
from app.control.tracker import TrackerConfig
from app.model.slot import SlotConfig
from app.training.config import RunConfig
from app.training.datasets import load_dataset
from app.training.vectorized import VectorizedTrainer
from instrumentation.hub import TelemetryHub, installed
from instrumentation.otel import OpenTelemetrySession, configure_opentelemetry, current_span_ids
from instrumentation.sinks import JsonlSink

PROTOCOLS = ("grpc", "http/protobuf")


def receiver_for(protocol: str) -> GrpcReceiver | HttpReceiver:
    return (GrpcReceiver() if protocol == "grpc" else HttpReceiver()).start()


def session_for(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, protocol: str, **settings: str
) -> OpenTelemetrySession:
    """A session exporting every signal to `endpoint`, with the OTEL_* `settings`."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return configure_opentelemetry("accounting", install_globally=False)


def emit_events(session: OpenTelemetrySession, count: int, data_keys: int = 0) -> None:
    """`count` domain events through the session's sink, inside one span: each a span
    event and a log record, with `data_keys` data attributes."""
    assert session.tracer_provider is not None and session.sink is not None
    tracer = session.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span(names.BATCH_SPAN):
        for _ in range(count):
            data = {f"key{index}": index for index in range(data_keys)}
            session.sink.emit(
                TelemetryEvent(EventType.PLATEAU_DETECTED, message="plateau", data=data)
            )


def events_exported(
    monkeypatch: pytest.MonkeyPatch, protocol: str, count: int, data_keys: int = 0, **settings: str
) -> tuple[OpenTelemetrySession, Received]:
    """`emit_events(count, data_keys)` in a session exporting to a fresh receiver over
    `protocol`, with the OTEL_* `settings`, shut down: the session and what the receiver
    stored."""
    receiver = receiver_for(protocol)
    try:
        session = session_for(monkeypatch, receiver.endpoint, protocol, **settings)
        emit_events(session, count, data_keys)
        session.shutdown(timeout_s=5)
    finally:
        receiver.stop()
    return session, receiver


def clear_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


class RecordingSink:
    """A hub sink that keeps every event, to compare with what was exported."""

    name = "recorder"

    def __init__(self) -> None:
        self.events: list[TelemetryEvent] = []

    def emit(self, event: TelemetryEvent) -> None:
        self.events.append(event)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


# Fast run: short seed stages so seeds germinate, blend and get culled in 8 epochs;
# DEBUG level so PPO updates carry per-layer gradient statistics (the largest event).
FAST_CONFIG = RunConfig(
    controller="ppo",
    envs=2,
    episodes=4,
    max_epochs=8,
    dataset="synthetic",
    seed=0,
    slot=SlotConfig(
        training_epochs=1,
        blending_epochs=2,
        shadowing_epochs=1,
        probation_max_epochs=2,
        embargo_epochs=1,
    ),
    tracker=TrackerConfig(stabilization_epochs=2),
    telemetry_level=TelemetryLevel.DEBUG,
)


@dataclass
class ExportedRun:
    protocol: str
    run_id: str
    received: Received
    events: list[TelemetryEvent]
    jsonl_lines: list[dict[str, Any]]
    prometheus_text: str
    shutdown_finished: bool
    shutdown_s: float


def train_and_export(
    protocol: str, tmp: Path, environment: Mapping[str, str] | None = None
) -> ExportedRun:
    """FAST_CONFIG trained and exported to a fresh receiver, OTEL_* variables set to
    the defaults of these tests updated with `environment`."""
    receiver: GrpcReceiver | HttpReceiver = (
        GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    ).start()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            clear_otel_environment(monkeypatch)
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
            for name, value in (environment or {}).items():
                monkeypatch.setenv(name, value)
            run_id = uuid.uuid4().hex[:16]
            session = configure_opentelemetry(run_id, prometheus_port=0)
            recorder = RecordingSink()
            jsonl = JsonlSink(tmp, context_provider=current_span_ids)
            assert session.sink is not None
            hub = TelemetryHub([jsonl, recorder, session.sink])
            session.report_sink_errors(hub)
            tracer = trace.get_tracer("esper.cli")
            with tracer.start_as_current_span(
                names.RUN_SPAN, attributes={names.RUN_ID: run_id}
            ) as run_span:
                trainer = VectorizedTrainer(
                    FAST_CONFIG, load_dataset("synthetic", seed=0), run_id=run_id, run_span=run_span
                )
            with installed(hub):
                while not trainer.finished:
                    trainer.run_batch()
            registry = session.prometheus_registry
            assert registry is not None
            prometheus_text = generate_latest(registry).decode()
            started = time.perf_counter()
            finished = session.shutdown(timeout_s=10)
            shutdown_s = time.perf_counter() - started
        lines = [json.loads(line) for line in jsonl.path.read_text().splitlines()]
        return ExportedRun(
            protocol,
            run_id,
            receiver,
            recorder.events,
            lines,
            prometheus_text,
            finished,
            shutdown_s,
        )
    finally:
        torch.set_num_threads(threads)
        receiver.stop()
