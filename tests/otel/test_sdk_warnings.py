"""The OpenTelemetry SDK's and exporters' warnings while a command runs: one
`esper: warning:` line per problem (not per retry), secrets redacted, printed below the
progress bar, and nowhere else (instrumentation/otel/console_warnings.py)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from otel_runs import emit_events, receiver_for, session_for
from receivers import GrpcReceiver

from app.contracts import telemetry_names as names
from instrumentation.otel import OpenTelemetrySession
from instrumentation.otel.console_warnings import LOGGERS, PREFIX, of_this_rank, warnings_to

RETRY = "Transient error %s encountered while exporting %s batch, retrying in %.2fs."


class Kept(logging.Handler):
    """The messages of every record that reaches the root logger's handlers."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def root_records() -> Iterator[Kept]:
    kept = Kept()
    logging.getLogger().addHandler(kept)
    yield kept
    logging.getLogger().removeHandler(kept)


def test_retries_of_one_problem_are_one_line_and_another_problem_another() -> None:
    logger = logging.getLogger("opentelemetry.exporter.test")
    lines: list[str] = []
    with warnings_to(lines.append):
        for delay in (0.93, 1.87, 4.12):
            logger.warning(RETRY, "Service Unavailable", "spans", delay)
        logger.warning(RETRY, "Service Unavailable", "logs", 1.04)
        logger.warning(RETRY, "Bad Gateway", "spans", 0.98)
        logger.info("not a warning")
    assert lines == [
        f"{PREFIX}Transient error Service Unavailable encountered while exporting spans "
        "batch, retrying in 0.93s.",
        f"{PREFIX}Transient error Service Unavailable encountered while exporting logs "
        "batch, retrying in 1.04s.",
        f"{PREFIX}Transient error Bad Gateway encountered while exporting spans batch, "
        "retrying in 0.98s.",
    ]


def test_the_records_reach_no_other_handler_until_the_block_ends(root_records: Kept) -> None:
    loggers = [logging.getLogger(f"{name}.test") for name in LOGGERS]
    before = {name: list(logging.getLogger(name).handlers) for name in LOGGERS}
    lines: list[str] = []
    with warnings_to(lines.append):
        for logger in loggers:
            logger.warning("from %s", logger.name)
    assert lines == [f"{PREFIX}from {logger.name}" for logger in loggers]
    assert root_records.messages == []
    assert all(logging.getLogger(name).propagate for name in LOGGERS)
    assert {name: logging.getLogger(name).handlers for name in LOGGERS} == before
    loggers[0].warning("after")
    assert root_records.messages == ["after"]


def test_a_line_holds_no_credentials_and_no_line_break() -> None:
    logger = logging.getLogger("opentelemetry.exporter.test")
    lines: list[str] = []
    with warnings_to(lines.append):
        logger.error("Failed to export to %s\nsecond line", "http://alice:hunter22@127.0.0.1:9")
    assert lines == [f"{PREFIX}Failed to export to http://***@127.0.0.1:9 second line"]


def test_under_torchrun_each_ranks_lines_name_their_rank(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines: list[str] = []
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    of_this_rank(lines.append)("alone")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    of_this_rank(lines.append)("second")
    assert lines == ["alone", "second (rank 1)"]


def make_spans(session: OpenTelemetrySession, count: int) -> None:
    assert session.tracer_provider is not None
    tracer = session.tracer_provider.get_tracer("test")
    for _ in range(count):
        with tracer.start_as_current_span(names.EPOCH_SPAN):
            pass


def test_a_real_exporter_prints_one_line_per_signal_and_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OTLP/HTTP: a collector answering 503 makes each signal's exporter retry within the
    export timeout, then give up ("Failed to export ..."): one line per signal. A later 500
    (not retried) is another problem."""
    receiver = receiver_for("http/protobuf")
    receiver.fail_with = 503
    lines: list[str] = []
    try:
        with warnings_to(lines.append):
            session = session_for(
                monkeypatch,
                receiver.endpoint,
                "http/protobuf",
                OTEL_EXPORTER_OTLP_TIMEOUT="2.5",
                OTEL_METRICS_EXPORTER="none",
            )
            make_spans(session, 3)
            emit_events(session, 2)
            session.force_flush(10_000)
            retried = receiver.attempts["traces"]
            receiver.fail_with = 500
            make_spans(session, 1)
            session.shutdown(timeout_s=5)
    finally:
        receiver.stop()
    assert retried >= 2 and receiver.attempts["logs"] >= 2
    assert all(line.startswith(PREFIX) for line in lines)
    assert len(lines) == 3, lines
    unavailable = [line for line in lines if "Service Unavailable" in line]
    assert len(unavailable) == 2
    assert any("spans batch" in line for line in unavailable)
    assert any("logs batch" in line for line in unavailable)
    assert "500" in lines[2]


# --- `esper train` with its progress bar -----------------------------------------------------


@pytest.mark.slow
def test_train_prints_one_warning_line_below_the_bar(tmp_path: Path) -> None:
    """A collector answering UNAVAILABLE to every trace export, while the progress bar
    draws to a pipe: the exporter's retries and its final failure are one line, printed
    whole between redraws of the bar, and no record reaches stderr by any other way."""
    receiver = GrpcReceiver().start()
    receiver.fail_with = grpc.StatusCode.UNAVAILABLE
    environment = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2.5",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    args = ["--dataset", "synthetic", "--envs", "2", "--max-epochs", "6", "--episodes", "8"]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "app", "train", *args, "--telemetry-dir", str(tmp_path)],
            env={**_without_otel(), **environment},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        receiver.stop()
    assert done.returncode == 0, done.stderr
    assert "episode/s" in done.stderr  # the bar drew
    assert receiver.attempts["traces"] >= 2  # retried: several records, one line
    rows = done.stderr.split("\n")
    warnings = [row for row in rows if PREFIX in row]
    assert len(warnings) == 1, warnings
    # Whole: the bar was cleared (`\r`) before it and nothing follows it on its row.
    (visible,) = [row.split("\r")[-1] for row in warnings]
    assert visible.startswith(PREFIX) and "UNAVAILABLE" in visible
    assert all(part.strip() == "" or "episode" in part for part in warnings[0].split("\r")[:-1])
    exporter_words = ("Transient error", "Failed to export", "StatusCode")
    assert [row for row in rows if any(word in row for word in exporter_words)] == warnings


def _without_otel() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
