"""`esper replay` ends with the same `export:` line as a training run: what was sent,
what was lost and why, checked against what the receiver stored."""

from __future__ import annotations

import io
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

import grpc
import pytest
from otel_runs import clear_otel_environment
from receivers import GrpcReceiver, HttpReceiver

from app.cli import main


def replay(
    receiver: GrpcReceiver | HttpReceiver, protocol: str, log: Path
) -> tuple[int, list[str]]:
    with pytest.MonkeyPatch.context() as monkeypatch, redirect_stderr(io.StringIO()) as err:
        clear_otel_environment(monkeypatch)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.5")
        code = main(["replay", str(log)])
    return code, err.getvalue().splitlines()


def export_of(lines: list[str]) -> str:
    (line,) = [line for line in lines if line.startswith("  export:    ")]
    return line.removeprefix("  export:    ")


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_healthy_replay_reports_what_the_receiver_got(legacy_log: Path, protocol: str) -> None:
    receiver = (GrpcReceiver() if protocol == "grpc" else HttpReceiver()).start()
    try:
        code, lines = replay(receiver, protocol, legacy_log)
    finally:
        receiver.stop()
    assert code == 0, lines
    spans, exports = len(receiver.spans()), len(receiver.metric_requests)
    assert spans > 0 and exports == 1
    assert (
        export_of(lines)
        == f"traces {spans} spans sent, none lost; metrics 1 export sent, none lost"
    )


FAILURES: list[tuple[str, Any, str]] = [
    ("grpc", grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE"),
    ("http/protobuf", 503, "HTTP 503"),
]


@pytest.mark.parametrize(("protocol", "answer", "status"), FAILURES)
def test_a_failing_collector_is_reported_with_its_status(
    legacy_log: Path, protocol: str, answer: Any, status: str
) -> None:
    receiver = (GrpcReceiver() if protocol == "grpc" else HttpReceiver()).start()
    receiver.fail_with = answer
    try:
        code, lines = replay(receiver, protocol, legacy_log)
    finally:
        receiver.stop()
    assert code == 0, lines  # export losses are reported, they are not a replay error
    summary = export_of(lines)
    assert summary.startswith("traces 0 spans sent, ")
    assert f"lost (export failed: {status})" in summary
    assert summary.endswith(f"metrics 0 exports sent, 1 lost (export failed: {status})")
    assert not receiver.spans() and receiver.attempts["traces"] >= 1
