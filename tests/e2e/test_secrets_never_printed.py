"""`esper train` in a child process, with a password in the endpoint URL and a secret
header value, against a closed port and a collector that refuses the credentials: the
failure is reported in the summary, the secrets appear nowhere in stdout or stderr."""

from __future__ import annotations

import base64
from pathlib import Path

import grpc
import pytest
from e2e_runs import SHORT_RUN, train_to_the_end
from receivers import GrpcReceiver, HttpReceiver, free_port

ARGS = (*SHORT_RUN, "--episodes", "4")
PASSWORD = "hunter2-Pa55word"
TOKEN = "s3cr3t-T0ken-value"
HEADERS = f"x-api-key=Key%20{TOKEN},x-team=ml"
BASIC = base64.b64encode(f"esper:{PASSWORD}".encode()).decode()
SECRETS = (PASSWORD, TOKEN, BASIC)


def train(tmp_path: Path, otel: dict[str, str]) -> str:
    """stdout and stderr of a run that must complete (exit 0)."""
    done = train_to_the_end(ARGS, tmp_path / "t", {"OTEL_EXPORTER_OTLP_TIMEOUT": "1", **otel})
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def export_line(output: str) -> str:
    (line,) = [line for line in output.splitlines() if line.startswith("  export:    ")]
    return line


@pytest.mark.slow
@pytest.mark.parametrize(
    ("protocol", "status"), [("grpc", "UNAVAILABLE"), ("http/protobuf", "connection refused")]
)
def test_a_closed_port(tmp_path: Path, protocol: str, status: str) -> None:
    output = train(
        tmp_path,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://esper:{PASSWORD}@127.0.0.1:{free_port()}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_HEADERS": HEADERS,
        },
    )
    for secret in SECRETS:
        assert secret not in output
    if protocol == "grpc":  # its exporter names the target, user info included
        assert "***@127.0.0.1" in output
    assert f"lost (export failed: {status})" in export_line(output)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("protocol", "refusal", "status"),
    [
        ("grpc", grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
        ("http/protobuf", 401, "HTTP 401"),
    ],
)
def test_a_collector_refusing_the_credentials(
    tmp_path: Path, protocol: str, refusal: object, status: str
) -> None:
    receiver = (GrpcReceiver() if protocol == "grpc" else HttpReceiver()).start()
    receiver.fail_with = refusal
    # gRPC takes no user info in its target: the secret header alone there.
    endpoint = receiver.endpoint
    if protocol == "http/protobuf":
        endpoint = endpoint.replace("http://", f"http://esper:{PASSWORD}@")
    try:
        output = train(
            tmp_path,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                "OTEL_EXPORTER_OTLP_HEADERS": HEADERS,
            },
        )
    finally:
        receiver.stop()
    sent = receiver.headers[0]  # the credentials did go out
    assert sent["x-api-key"] == f"Key {TOKEN}"
    if protocol == "http/protobuf":
        assert sent["authorization"] == f"Basic {BASIC}"
    for secret in SECRETS:
        assert secret not in output
    line = export_line(output)
    assert f"traces 0 spans sent, 33 lost (export failed: {status})" in line
    assert f"metrics 0 exports sent, 1 lost (export failed: {status})" in line
    assert "logs 0 records sent, " in line and f"lost (export failed: {status})" in line
    assert receiver.attempts["logs"] >= 1
