"""A real Prometheus scrapes `esper train --prometheus-port`: every metric of DESIGN §5's
table has a series with exactly the table's labels, read back through Prometheus's HTTP
query API (issue 3, "Done means").

Needs the `prometheus` binary (Debian package `prometheus`; `.ci/run` installs it). Without
it the test fails rather than skips, so that CI cannot pass without checking this.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_runs import ENDLESS, SHORT_RUN, Training, only_run_dir
from receivers import free_port

from app.contracts.stages import SeedStage

PPO_GAUGES = (
    "esper_ppo_policy_loss",
    "esper_ppo_value_loss",
    "esper_ppo_entropy",
    "esper_ppo_entropy_coef",
    "esper_ppo_approx_kl",
    "esper_ppo_clip_fraction",
    "esper_ppo_ratio_max",
    "esper_ppo_ratio_min",
    "esper_ppo_ratio_std",
    "esper_ppo_explained_variance",
)
HISTOGRAMS = (
    "esper_batch_duration_seconds",
    "esper_epoch_duration_seconds",
    "esper_ppo_update_duration_seconds",
)
# DESIGN §5's table: Prometheus name -> its labels besides run_id. Histograms are queried
# through their _bucket (with `le`), _count and _sum series.
TABLE: dict[str, frozenset[str]] = {
    **{name: frozenset() for name in PPO_GAUGES},
    "esper_training_accuracy": frozenset({"window"}),
    "esper_training_reward": frozenset(),
    "esper_episodes_total": frozenset(),
    "esper_events_total": frozenset({"event_type", "severity"}),
    "esper_anomalies_total": frozenset({"anomaly_type"}),
    "esper_seeds": frozenset({"stage"}),
    **{f"{name}_bucket": frozenset({"le"}) for name in HISTOGRAMS},
    **{f"{name}_count": frozenset() for name in HISTOGRAMS},
    **{f"{name}_sum": frozenset() for name in HISTOGRAMS},
    "esper_telemetry_sink_errors_total": frozenset({"sink"}),
}
# Labels Prometheus itself adds to every scraped series.
SCRAPE_LABELS = frozenset({"__name__", "job", "instance"})
JOB = "esper"


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").is_file() else None
    )
    if found is None:
        pytest.fail(
            "the `prometheus` binary is missing: this test needs the Debian package "
            "`prometheus` (sudo apt-get install prometheus; .ci/run installs it)",
            pytrace=False,
        )
    return found


class Prometheus:
    """A Prometheus server of our own (not the Debian service) scraping one target."""

    def __init__(self, binary: str, directory: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            f"  - job_name: {JOB}\n"
            "    static_configs:\n"
            f"      - targets: ['{target}']\n",
            encoding="utf-8",
        )
        self.log = directory / "prometheus.log"
        with self.log.open("w", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector `promql` evaluates to now: [{"metric": labels, "value": ...}]."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_until(self, promql: str, timeout: float) -> list[dict[str, Any]]:
        """Poll `promql` until it returns a series; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"prometheus exited with {self.process.returncode}:\n{self.logs()}")
            try:
                result = self.query(promql)
            except (urllib.error.URLError, ConnectionError):
                result = []  # not listening yet
            if result:
                return result
            if time.monotonic() > deadline:
                targets = ""
                try:
                    with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5) as reply:
                        targets = reply.read().decode()
                except OSError as error:
                    targets = repr(error)
                pytest.fail(
                    f"no series for {promql!r} after {timeout}s\n"
                    f"targets: {targets}\nprometheus log:\n{self.logs()}"
                )
            time.sleep(0.25)

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def binary() -> str:
    return prometheus_binary()


@pytest.fixture
def servers() -> Iterator[list[Prometheus]]:
    started: list[Prometheus] = []
    yield started
    for server in started:
        server.stop()


@pytest.mark.slow
def test_a_real_prometheus_scrapes_every_metric_of_the_table_with_its_labels(
    tmp_path: Path, binary: str, servers: list[Prometheus], training: list[Training]
) -> None:
    telemetry_dir = tmp_path / "telemetry"
    run = Training(
        [*SHORT_RUN, *ENDLESS, "--prometheus-port", "0", "--telemetry-dir", str(telemetry_dir)],
        cwd=tmp_path,
    )
    training.append(run)
    line = run.lines[run.wait_for_line("esper: metrics at http://localhost:", timeout=120)]
    port = int(line.rsplit(":", 1)[1].split("/", 1)[0])
    run_id = json.loads((only_run_dir(telemetry_dir) / "run.json").read_text())["run_id"]

    (tmp_path / "prometheus").mkdir()
    prometheus = Prometheus(binary, tmp_path / "prometheus", f"127.0.0.1:{port}")
    servers.append(prometheus)

    # A short synthetic run detects value collapse in its first PPO update (seed 0:
    # explained_variance about -14.5 < 0.1), so the anomaly counter has counted something.
    anomaly = f'esper_anomalies_total{{run_id="{run_id}",anomaly_type="value_collapse"}} > 0'
    prometheus.wait_until(anomaly, timeout=120)
    # Every series once scraped: the histograms and PPO gauges exist from the first update.
    prometheus.wait_until(f'esper_ppo_update_duration_seconds_count{{run_id="{run_id}"}}', 60)

    found: dict[str, list[dict[str, str]]] = {}
    for name, labels in TABLE.items():
        series = [item["metric"] for item in prometheus.query(f'{name}{{job="{JOB}"}}')]
        assert series, f"{name}: no series in Prometheus"
        for metric in series:
            assert metric.get("run_id") == run_id, (name, metric)
            assert set(metric) == SCRAPE_LABELS | {"run_id"} | labels, (name, metric)
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
