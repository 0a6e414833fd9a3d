"""A real Prometheus scrapes `esper train --prometheus-port`: every metric of the table in
docs/opentelemetry.md has a series with exactly the table's labels, read back through
Prometheus's HTTP query API.

Needs the `prometheus` binary (Debian package `prometheus`; `.ci/run` installs it). Without
it the test fails rather than skips, so that CI cannot pass without checking this.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from e2e_runs import JOB, Prometheus, Training, scraped_run
from helpers import HISTOGRAMS, METRIC_TABLE

from app.contracts.stages import SeedStage

# Histograms are queried through their _bucket (with `le`), _count and _sum series.
TABLE: dict[str, frozenset[str]] = {
    **{name: labels for name, labels in METRIC_TABLE.items() if name not in HISTOGRAMS},
    **{f"{name}_bucket": frozenset({"le"}) for name in HISTOGRAMS},
    **{f"{name}_count": frozenset() for name in HISTOGRAMS},
    **{f"{name}_sum": frozenset() for name in HISTOGRAMS},
}
# Labels Prometheus itself adds to every scraped series.
SCRAPE_LABELS = frozenset({"__name__", "job", "instance"})


@pytest.mark.slow
def test_a_real_prometheus_scrapes_every_metric_of_the_table_with_its_labels(
    tmp_path: Path, binary: str, servers: list[Prometheus], training: list[Training]
) -> None:
    run, prometheus, run_id = scraped_run(tmp_path, binary, training, servers)

    # The run judges its critic from the first PPO update, whose explained variance is
    # below 0.1, so the anomaly counter has counted something.
    anomaly = f'esper_anomalies_total{{run_id="{run_id}",anomaly_type="value_collapse"}} > 0'
    prometheus.wait_until(anomaly, timeout=120)
    # Every series once scraped: the histograms and PPO gauges exist from the first update.
    prometheus.wait_until(f'esper_ppo_update_duration_seconds_count{{run_id="{run_id}"}}', 60)
    prometheus.wait_until(f'esper_ppo_explained_variance{{run_id="{run_id}"}}[10m]', 60)

    # Every series scraped so far, not only those of the latest scrape: the SDK drops a
    # gauge's undefined value (explained variance is NaN while every return is the same),
    # so a series can go stale between updates.
    found: dict[str, list[dict[str, str]]] = {}
    for name, labels in TABLE.items():
        series = [item["metric"] for item in prometheus.query(f'{name}{{job="{JOB}"}}[10m]')]
        assert series, f"{name}: no series in Prometheus"
        for metric in series:
            assert metric.get("run_id") == run_id, (name, metric)
            assert set(metric) == SCRAPE_LABELS | {"run_id", "rank"} | labels, (name, metric)
        found[name] = series

    run.process.send_signal(signal.SIGTERM)
    assert run.wait(timeout=30) == 143, run.stderr

    def values(name: str, label: str) -> set[str]:
        return {metric[label] for metric in found[name]}

    assert values("esper_training_accuracy", "window") == {"batch", "rolling"}
    events = {(m["event_type"], m["severity"]) for m in found["esper_events_total"]}
    assert {
        ("EPOCH_COMPLETED", "info"),
        ("PPO_UPDATE_COMPLETED", "info"),
        ("VALUE_COLLAPSE_DETECTED", "warning"),
    } <= events, events
    assert "value_collapse" in values("esper_anomalies_total", "anomaly_type")
    stages = {stage.name for stage in SeedStage if stage is not SeedStage.DORMANT}
    assert values("esper_seeds", "stage") == stages
    assert {"jsonl", "console", "otel"} <= values("esper_telemetry_sink_errors_total", "sink")
    for name in HISTOGRAMS:
        buckets = values(f"{name}_bucket", "le")
        assert "+Inf" in buckets and len(buckets) > 2, (name, buckets)
