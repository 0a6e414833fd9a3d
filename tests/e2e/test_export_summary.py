"""`esper train` in a child process says in its summary what OpenTelemetry export sent
and lost, and why, against real sockets: a healthy collector, one answering 503 /
UNAVAILABLE, one killed mid-run, one that never answers, none at all. The numbers are
checked against what the receiver stored; nothing is printed after the summary; export
losses never change the exit code."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from e2e_runs import SHORT_RUN, train_to_the_end
from receivers import BlackHole, GrpcReceiver, HttpReceiver

ARGS = (*SHORT_RUN, "--episodes", "4")
# One esper.run span; per batch (2): the batch, 2 episodes of 6 epochs, the update.
SPANS = 1 + 2 * (1 + 2 + 2 * 6 + 1)
PROTOCOLS = ("grpc", "http/protobuf")
PART = re.compile(
    r"(traces|logs|metrics) (\d+) (?:span|record|export)s? sent, "
    r"(?:none lost|(\d+) lost \((.*?)\))(?=;|$)"
)


@dataclass(frozen=True)
class Part:
    sent: int
    lost: int
    reasons: str


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str
    telemetry_dir: Path

    def jsonl_lines(self) -> int:
        (log,) = self.telemetry_dir.glob("*/events.jsonl")
        return len(log.read_text(encoding="utf-8").splitlines())

    def summary(self) -> list[str]:
        """The summary's lines; fails if anything follows them."""
        lines = self.stderr.splitlines()
        (start,) = [i for i, line in enumerate(lines) if line.startswith("esper: training ")]
        after = lines[start + 1 :]
        assert all(line.startswith("  ") for line in after), f"printed after the summary:\n{after}"
        return after

    def export(self) -> str:
        (line,) = [line for line in self.summary() if line.startswith("  export:    ")]
        return line.removeprefix("  export:    ")

    def parts(self) -> dict[str, Part]:
        found = {}
        for match in PART.finditer(self.export()):
            lost = int(match[3]) if match[3] else 0
            found[match[1]] = Part(int(match[2]), lost, match[4] or "")
        return found


FAILED_WITH = re.compile(r"export failed: (HTTP \d+|[A-Z_]+)")


def train(tmp_path: Path, otel: dict[str, str] | None = None) -> Run:
    done = train_to_the_end(ARGS, tmp_path / "t", otel)
    assert done.returncode == 0, done.stderr
    return Run(done.returncode, done.stdout, done.stderr, tmp_path / "t")


def receiver_for(protocol: str) -> GrpcReceiver | HttpReceiver:
    return (GrpcReceiver() if protocol == "grpc" else HttpReceiver()).start()


def otlp(endpoint: str, protocol: str, **more: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        **more,
    }


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_healthy_collector_gets_what_the_summary_says(tmp_path: Path, protocol: str) -> None:
    receiver = receiver_for(protocol)
    try:
        run = train(tmp_path, otlp(receiver.endpoint, protocol))
    finally:
        receiver.stop()
    assert len(receiver.spans()) == SPANS and len(receiver.metric_requests) == 1
    records = run.jsonl_lines()
    assert len(receiver.log_records()) == records
    assert run.export() == (
        f"traces {SPANS} spans sent, none lost; logs {records} records sent, none lost; "
        "metrics 1 export sent, none lost"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("protocol", "answer", "status"),
    [("grpc", grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE"), ("http/protobuf", 503, "HTTP 503")],
)
def test_a_collector_answering_unavailable_is_reported(
    tmp_path: Path, protocol: str, answer: object, status: str
) -> None:
    receiver = receiver_for(protocol)
    receiver.fail_with = answer
    try:
        run = train(tmp_path, otlp(receiver.endpoint, protocol, OTEL_EXPORTER_OTLP_TIMEOUT="1"))
    finally:
        receiver.stop()
    assert receiver.attempts["traces"] >= 1 and not receiver.spans()
    assert receiver.attempts["logs"] >= 1 and not receiver.log_records()
    parts = run.parts()
    counts = {name: (part.sent, part.lost) for name, part in parts.items()}
    assert counts == {"traces": (0, SPANS), "logs": (0, run.jsonl_lines()), "metrics": (0, 1)}
    # A loaded machine can let a gRPC call outlast the 1 s deadline set here; the summary
    # then reports that answer, DEADLINE_EXCEEDED, as it came.
    answers = {status, "DEADLINE_EXCEEDED"} if protocol == "grpc" else {status}
    reported = [set(FAILED_WITH.findall(part.reasons)) for part in parts.values()]
    assert all(found and found <= answers for found in reported), run.export()
    assert any(status in found for found in reported), run.export()


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_collector_killed_mid_run(tmp_path: Path, protocol: str) -> None:
    """Spans are exported every 100 ms; the collector dies after its first trace export:
    the summary's sent spans are the ones it stored, the rest are counted lost."""
    receiver = receiver_for(protocol)
    receiver.kill_after_traces = 1
    try:
        run = train(
            tmp_path,
            otlp(
                receiver.endpoint,
                protocol,
                OTEL_BSP_SCHEDULE_DELAY="100",
                OTEL_EXPORTER_OTLP_TIMEOUT="1",
            ),
        )
    finally:
        receiver.stop()
    parts = run.parts()
    assert 0 < parts["traces"].sent == len(receiver.spans()) < SPANS
    assert parts["traces"].sent + parts["traces"].lost == SPANS
    assert "export failed" in parts["traces"].reasons
    assert parts["logs"].sent == len(receiver.log_records())
    assert parts["logs"].sent + parts["logs"].lost == run.jsonl_lines()
    assert (parts["metrics"].sent, parts["metrics"].lost) == (len(receiver.metric_requests), 1)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nothing_is_printed_after_the_summary(tmp_path: Path, protocol: str) -> None:
    """A collector that never answers, metrics collected every 700 ms: an export is in
    flight when shutdown starts, and used to end (and log) after the summary; the
    metric reader's last collection used to find its exporter shut down."""
    hole = BlackHole()
    try:
        run = train(tmp_path, otlp(hole.endpoint, protocol, OTEL_METRIC_EXPORT_INTERVAL="700"))
    finally:
        hole.stop()
    assert "already shutdown" not in run.stderr
    parts = run.parts()  # run.summary() checks that nothing follows it
    assert (parts["traces"].sent, parts["traces"].lost) == (0, SPANS)
    assert (parts["logs"].sent, parts["logs"].lost) == (0, run.jsonl_lines())
    assert parts["metrics"].sent == 0 and parts["metrics"].lost >= 1


@pytest.mark.slow
def test_no_exporter_configured(tmp_path: Path) -> None:
    assert train(tmp_path).export() == "none configured (JSONL and console only)"
