"""Exemplars link the duration histograms to their traces, both ways a Prometheus gets
them: a real Prometheus with exemplar storage scrapes `esper train --prometheus-port`
(OpenMetrics) while the run exports traces and metrics over OTLP to an in-process
receiver. Every exemplar Prometheus stores, and every exemplar of the OTLP histograms,
names a trace the receiver got; those of the batch and update durations name the very
span whose duration they are, those of the epoch duration an `esper.epoch` span.

Needs the `prometheus` binary, as test_prometheus.py does.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_runs import Prometheus, Training, scraped_run
from receivers import GrpcReceiver

from app.contracts import telemetry_names as names

# Prometheus histogram -> (OTLP instrument, the span its exemplars name).
HISTOGRAMS = {
    "esper_batch_duration_seconds": (names.BATCH_DURATION, names.BATCH_SPAN),
    "esper_ppo_update_duration_seconds": (names.UPDATE_DURATION, names.UPDATE_SPAN),
    "esper_epoch_duration_seconds": (names.EPOCH_DURATION, names.EPOCH_SPAN),
}


@pytest.fixture
def receiver() -> Iterator[GrpcReceiver]:
    server = GrpcReceiver().start()
    yield server
    server.stop()


def stored_exemplars(
    prometheus: Prometheus, promql: str, since: float, timeout: float
) -> list[dict[str, Any]]:
    """The exemplars Prometheus stored for `promql` since `since`, polled until there are
    some; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = [
            exemplar
            for series in prometheus.query_exemplars(promql, since, time.time() + 60)
            for exemplar in series["exemplars"]
        ]
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"no exemplars for {promql!r} after {timeout}s\n{prometheus.logs()}")
        time.sleep(0.5)


@pytest.mark.slow
def test_histogram_exemplars_name_the_spans_the_receiver_got(
    tmp_path: Path,
    binary: str,
    servers: list[Prometheus],
    training: list[Training],
    receiver: GrpcReceiver,
) -> None:
    since = time.time() - 60
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
    }
    run, prometheus, run_id = scraped_run(
        tmp_path, binary, training, servers, otel=otel, exemplars=True
    )

    # Prometheus is up and the first update has ended: every histogram has a series.
    prometheus.wait_until(f'esper_ppo_update_duration_seconds_count{{run_id="{run_id}"}}', 90)
    stored = {
        family: stored_exemplars(prometheus, f'{family}_bucket{{run_id="{run_id}"}}', since, 30)
        for family in HISTOGRAMS
    }
    # Stopped on SIGTERM, the run exports every span it ended before it exits.
    run.process.send_signal(signal.SIGTERM)
    assert run.wait(timeout=30) == 143, run.stderr

    spans = {(span.trace_id.hex(), span.span_id.hex()): span.name for span in receiver.spans()}
    traces = {trace_id for trace_id, _ in spans}
    metrics = receiver.metrics()
    for family, (instrument, span_name) in HISTOGRAMS.items():
        for exemplar in stored[family]:
            labels = exemplar["labels"]
            assert set(labels) == {"trace_id", "span_id"}, (family, exemplar)
            assert len(labels["trace_id"]) == 32 and len(labels["span_id"]) == 16, exemplar
            assert labels["trace_id"] in traces, (family, exemplar)
            assert spans.get((labels["trace_id"], labels["span_id"])) == span_name, exemplar
        # Over OTLP: the points carry exemplars of the same spans.
        otlp = [
            (exemplar.trace_id.hex(), exemplar.span_id.hex())
            for metric in metrics.get(instrument, [])
            for point in metric.histogram.data_points
            for exemplar in point.exemplars
        ]
        assert otlp, f"{instrument}: no exemplars over OTLP"
        assert {spans.get(ids) for ids in otlp} == {span_name}, (instrument, otlp)
