"""Every Grafana panel query runs against a real Prometheus that scraped a real training
run: Grafana's variables are substituted as Grafana would, each query goes through
Prometheus's HTTP query API, and a query that errors or returns no series fails the test.
The Jaeger data source's trace-to-metrics queries are run too. Panels that query Loki are
left to tests/deploy/test_logql.py. The run is a single process, and a run of two ranks
under torchrun, whose panels must not draw any series twice (once per rank).

Needs the `prometheus` binary (Debian package `prometheus`), like test_prometheus.py.
"""

from __future__ import annotations

import json
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_runs import Prometheus, Training, scraped_run

GRAFANA = Path(__file__).resolve().parents[2] / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "datasources.yaml"

# Grafana's built-in variables, as Grafana would set them for this Prometheus (scrape
# interval 1s): $__rate_interval is at least 4 scrape intervals, so 15s holds ~15 samples;
# $__range is the dashboard's time range.
BUILT_INS = {
    "$__rate_interval": "15s",
    "$__interval": "5s",
    "$__range": "1h",
}

# How long a query may take to return a series: a few of the run's batches.
WITHIN_S = 30.0

# Panels a short run cannot fill, by (dashboard title, panel title) -> why. None today:
# anomaly counters report every known type at zero from the start, the run detects value
# collapse in its first update (a warning event), and every sink reports its error count.
EXEMPT: dict[tuple[str, str], str] = {}


def substitute(expr: str, run_id: str) -> str:
    for name, value in {**BUILT_INS, "${run_id}": run_id, "$run_id": run_id}.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a variable left unsubstituted in {expr!r}"
    return expr


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard title, panel title, expr) of every target of every panel but those that
    query Loki (LogQL, parsed by tests/deploy/test_logql.py)."""
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in dashboard["panels"]:
            for nested in [panel, *panel.get("panels", [])]:
                for target in nested.get("targets", []):
                    source = target.get("datasource", nested.get("datasource", {}))
                    if source.get("type") == "loki":
                        continue
                    found.append((dashboard["title"], nested["title"], target["expr"]))
    return found


def trace_to_metrics_queries() -> list[tuple[str, str]]:
    """(name, query) of the Jaeger data source's trace-to-metrics links."""
    sources = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    [jaeger] = [source for source in sources if source["type"] == "jaeger"]
    links = jaeger["jsonData"]["tracesToMetrics"]
    assert [tag["value"] for tag in links["tags"]] == ["run_id"]
    # Provisioning reads `$$` as `$` (the file escapes Grafana's variables from its
    # environment expansion): the queries as Grafana runs them.
    return [(query["name"], query["query"].replace("$$", "$")) for query in links["queries"]]


def drawn_twice(result: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The series a panel would draw more than once: the same labels but for the ones
    that say where a series was scraped from (`rank`, `instance`)."""
    seen: dict[tuple[tuple[str, str], ...], int] = {}
    for item in result:
        labels = tuple(
            sorted((k, v) for k, v in item["metric"].items() if k not in ("rank", "instance"))
        )
        seen[labels] = seen.get(labels, 0) + 1
    return [dict(labels) for labels, count in seen.items() if count > 1]


def evaluate(prometheus: Prometheus, expr: str) -> list[dict[str, Any]] | str:
    """The series `expr` evaluates to within a few scrapes, or the error Prometheus
    answered with. A few scrapes, as a dashboard refreshes: the explained variance is
    undefined (not exported) for a batch whose episodes all returned the same, which a
    short run's batches sometimes do."""
    deadline = time.monotonic() + WITHIN_S
    while True:
        try:
            result = prometheus.query(expr)
        except urllib.error.HTTPError as error:  # 400 and 422: a bad query
            return f"HTTP {error.code}: {error.read().decode(errors='replace')}"
        except AssertionError as error:
            return str(error)
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_every_grafana_panel_query_returns_series_for_a_real_run(
    tmp_path: Path,
    binary: str,
    servers: list[Prometheus],
    training: list[Training],
    processes: int,
) -> None:
    queries = panel_queries()
    assert len(queries) >= 4 * 4, "the dashboards went missing"
    exempt_panels = {panel for (_, panel) in EXEMPT}
    assert exempt_panels <= {panel for (_, panel, _) in queries}, "an exemption names no panel"

    run, prometheus, run_id = scraped_run(tmp_path, binary, training, servers, processes)
    selector = f'run_id="{run_id}"'
    # Two PPO updates (every gauge, histogram and counter has a series by the first) ...
    prometheus.wait_until(
        f'esper_events_total{{{selector},event_type="PPO_UPDATE_COMPLETED"}} >= 2', timeout=180
    )
    prometheus.wait_until(f"esper_ppo_update_duration_seconds_count{{{selector}}} >= 2", 60)
    # Explained variance is undefined (NaN, not exported) while every episode's return is
    # the same: until an environment grows a seed that another does not.
    prometheus.wait_until(f"esper_ppo_explained_variance{{{selector}}}", 120)
    # ... and an anomaly: the first update detects value collapse (explained variance
    # < 0.1), a warning event.
    prometheus.wait_until(
        f'esper_anomalies_total{{{selector},anomaly_type="value_collapse"}} > 0', 60
    )
    # A short run does two updates in about two seconds: wait until the series that
    # appeared last have three scrapes within a $__rate_interval window, as a dashboard
    # a few seconds into a run would, so that rate() and increase() have two samples.
    # The anomaly counters exist at zero from the start; the warning events' series is
    # created by the first warning.
    window = BUILT_INS["$__rate_interval"]
    for series in (
        f"esper_ppo_update_duration_seconds_count{{{selector}}}",
        f"esper_anomalies_total{{{selector}}}",
        f'esper_events_total{{{selector},severity="warning"}}',
    ):
        prometheus.wait_until(f"count_over_time({series}[{window}]) >= 3", 60)

    failures = []
    checked = 0
    for dashboard, panel, expr in queries:
        if (dashboard, panel) in EXEMPT:
            continue
        query = substitute(expr, run_id)
        result = evaluate(prometheus, query)
        checked += 1
        if isinstance(result, str):
            failures.append(f"{dashboard} / {panel}: {query}\n    error: {result}")
        elif not result:
            failures.append(f"{dashboard} / {panel}: {query}\n    no series")
        elif twice := drawn_twice(result):
            failures.append(f"{dashboard} / {panel}: {query}\n    drawn once per rank: {twice}")
    for name, expr in trace_to_metrics_queries():
        query = substitute(expr.replace("$__tags", selector), run_id)
        result = evaluate(prometheus, query)
        checked += 1
        if isinstance(result, str) or not result:
            failures.append(
                f"Jaeger trace to metrics / {name}: {query}\n    {result or 'no series'}"
            )

    assert not failures, (
        f"{len(failures)} of {checked} queries failed:\n" + "\n".join(failures) + "\n"
        f"prometheus log:\n{prometheus.logs()}"
    )
    run.stop()
