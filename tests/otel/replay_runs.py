"""Shared by the replay tests: `esper replay` in this process or in a child, exporting
over real OTLP to a fresh in-process receiver, and readers of what it received."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import redirect_stderr
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from otel_runs import clear_otel_environment
from receivers import GrpcReceiver, HttpReceiver, Received, attributes_of

from app.cli import main
from app.contracts import telemetry_names as names
from instrumentation.otel.adapter import timestamp_ns


@dataclass
class Replayed:
    code: int
    stderr: str
    received: Received

    def spans(self, name: str | None = None) -> list[Span]:
        return [span for span in self.received.spans() if name in (None, span.name)]

    def span_events(self) -> dict[str, tuple[Span, Any]]:
        """Every exported span event by its esper.event.id, with the span holding it."""
        found = {}
        for span in self.spans():
            for event in span.events:
                found[attributes_of(event.attributes)[names.EVENT_ID]] = (span, event)
        return found

    def event_times(self) -> Counter[tuple[str, int]]:
        """(esper.event.id, time) of every exported span event, duplicates counted."""
        return Counter(
            (attributes_of(event.attributes)[names.EVENT_ID], event.time_unix_nano)
            for span in self.spans()
            for event in span.events
        )


def _receiver(protocol: str) -> GrpcReceiver | HttpReceiver:
    return (GrpcReceiver() if protocol == "grpc" else HttpReceiver()).start()


def replay(protocol: str, args: Sequence[str], otel: Mapping[str, str] | None = None) -> Replayed:
    """`esper replay ARGS` in this process, exporting to a fresh receiver; `otel` adds
    OTEL_* variables."""
    receiver = _receiver(protocol)
    try:
        with pytest.MonkeyPatch.context() as monkeypatch, redirect_stderr(io.StringIO()) as err:
            clear_otel_environment(monkeypatch)
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            for name, value in (otel or {}).items():
                monkeypatch.setenv(name, value)
            code = main(["replay", *args])
        return Replayed(code, err.getvalue(), receiver)
    finally:
        receiver.stop()


def replay_in_child(
    args: Sequence[str],
    *,
    python: Sequence[str] = ("-m", "app"),
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> Replayed:
    """`esper replay ARGS` in a child process (`python` says how the child starts it),
    exporting over OTLP/HTTP to a fresh receiver in this process."""
    receiver = _receiver("http/protobuf")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        **(extra_env or {}),
    )
    try:
        done = subprocess.run(
            [sys.executable, *python, "replay", *args],
            env=environment,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Replayed(done.returncode, done.stderr, receiver)
    finally:
        receiver.stop()


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def original_ns(record: dict[str, Any]) -> int:
    return timestamp_ns(datetime.fromisoformat(record["timestamp"]))
