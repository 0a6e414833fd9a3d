"""Grafana provisioning: the data sources, the dashboard provider and the
dashboards, checked as files; no Grafana needed. Every Prometheus query is executed
against a real Prometheus by tests/e2e/test_grafana_queries.py; every Loki query is parsed
as LogQL by test_logql.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import METRIC_TABLE
from stack_files import grafana_reads, load_yaml, loki_label, panels

from app.contracts import telemetry_names as names
from app.rl.anomaly import AnomalyThresholds

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "datasources.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dashboards.yaml"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))

# Every Prometheus name a dashboard may query (docs/opentelemetry.md). Histograms are
# queried through their _bucket, _count and _sum series.
CONTRACT_METRICS = frozenset(METRIC_TABLE)
HISTOGRAM_SERIES = re.compile(r"_(bucket|count|sum)$")
METRIC_NAME = re.compile(r"\besper_[a-z0-9_]+")
RUN_FILTER = 'run_id="$run_id"'
LOKI_RUN_FILTER = f'{loki_label(names.RUN_ID)}="$run_id"'
RUN_VARIABLE_QUERY = "label_values(esper_events_total, run_id)"
# The dashboard JSON schema of Grafana 11.3; newer Grafana releases (the compose file pins
# a 12.x) migrate it forward on load, while a newer schema would not load on 11.x.
SCHEMA_VERSION = 40

TITLES = {
    "Esper — PPO health",
    "Esper — Training progress",
    "Esper — Events and seeds",
    "Esper — Durations and telemetry",
}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(path.read_text(encoding="utf-8")) for path in DASHBOARDS]


def metrics_in(expr: str) -> set[str]:
    return {HISTOGRAM_SERIES.sub("", name) for name in METRIC_NAME.findall(expr)}


def datasource_uids() -> dict[str, str]:
    """Provisioned data source uid -> type."""
    return {source["uid"]: source["type"] for source in load(DATASOURCES)["datasources"]}


def by_title(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    matches = [panel for panel in panels(dashboard) if panel["title"] == title]
    assert len(matches) == 1, (dashboard["title"], title)
    return matches[0]


def test_the_data_sources_are_prometheus_by_default_and_jaeger_linked_both_ways() -> None:
    config = load(DATASOURCES)
    assert config["apiVersion"] == 1
    sources = {source["uid"]: source for source in config["datasources"]}
    assert set(sources) == {"prometheus", "jaeger", "loki"}
    prometheus, jaeger = sources["prometheus"], sources["jaeger"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    assert prometheus["isDefault"] is True
    assert jaeger["type"] == "jaeger"
    assert jaeger["url"] == "http://jaeger:16686"
    assert not jaeger.get("isDefault", False)
    # Exemplars carry the collector's trace_id label and open the trace in Jaeger.
    assert {"name": "trace_id", "datasourceUid": "jaeger"}.items() <= (
        prometheus["jsonData"]["exemplarTraceIdDestinations"][0].items()
    )
    # A span links to its run's metrics: the esper.run_id attribute becomes run_id="...".
    to_metrics = jaeger["jsonData"]["tracesToMetrics"]
    assert to_metrics["datasourceUid"] == "prometheus"
    assert {"key": names.RUN_ID, "value": "run_id"} in to_metrics["tags"]
    assert to_metrics["queries"]
    for query in to_metrics["queries"]:
        assert query["name"]
        assert "{$__tags}" in grafana_reads(query["query"]), query
        assert metrics_in(query["query"]) <= CONTRACT_METRICS, query


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings_in(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


def test_no_grafana_variable_is_taken_for_an_environment_variable() -> None:
    # Provisioning expands $NAME and ${NAME} in jsonData from the environment; a Grafana
    # variable ($__tags, ${__value.raw}) must be written $$ to reach Grafana.
    for source in load(DATASOURCES)["datasources"]:
        for value in strings_in(source.get("jsonData", {})):
            grafana_reads(value)


def test_a_log_line_links_to_its_trace_in_jaeger() -> None:
    sources = {source["uid"]: source for source in load(DATASOURCES)["datasources"]}
    loki = sources["loki"]
    assert loki["type"] == "loki"
    assert not loki.get("isDefault", False)
    [field] = loki["jsonData"]["derivedFields"]
    # Loki keeps an OTLP record's trace id as the structured metadata trace_id; the
    # matcher is a regular expression tried on every label name, so it is anchored.
    assert field["matcherType"] == "label"
    matcher = grafana_reads(field["matcherRegex"])
    assert re.search(matcher, "trace_id")
    assert not re.search(matcher, loki_label(names.ORIGINAL_TRACE_ID))
    assert sources[field["datasourceUid"]]["type"] == "jaeger"
    assert grafana_reads(field["url"]) == "${__value.raw}"


def test_a_span_links_to_its_events_in_loki() -> None:
    sources = {source["uid"]: source for source in load(DATASOURCES)["datasources"]}
    to_logs = sources["jaeger"]["jsonData"]["tracesToLogsV2"]
    assert sources[to_logs["datasourceUid"]]["type"] == "loki"
    # The default query would look for the ids in the line's text, which is the event's
    # message: the custom query filters the structured metadata instead.
    assert to_logs["customQuery"] is True
    query = grafana_reads(to_logs["query"])
    assert query.startswith("{${__tags}} ")
    assert 'trace_id="${__span.traceId}"' in query
    assert 'span_id="${__span.spanId}"' in query
    # ${__tags} selects streams by the labels Loki indexes: the run's id among them.
    loki = load_yaml("loki/config.yaml")
    [rule] = loki["limits_config"]["otlp_config"]["resource_attributes"]["attributes_config"]
    indexed = {loki_label(attribute) for attribute in rule["attributes"]}
    tags = {tag["key"]: tag["value"] for tag in to_logs["tags"]}
    assert tags[names.RUN_ID] == loki_label(names.RUN_ID)
    assert all(tags[key] == loki_label(key) for key in tags)
    assert set(tags.values()) <= indexed


def test_the_dashboard_provider_loads_the_mounted_directory_into_the_esper_folder() -> None:
    config = load(PROVIDERS)
    assert config["apiVersion"] == 1
    [provider] = config["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "Esper"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_four_dashboards_with_distinct_uids_and_the_expected_titles() -> None:
    found = dashboards()
    assert {dashboard["title"] for dashboard in found} == TITLES
    uids = [dashboard["uid"] for dashboard in found]
    assert len(set(uids)) == len(uids) == len(TITLES)
    for dashboard in found:
        assert dashboard["schemaVersion"] == SCHEMA_VERSION, dashboard["title"]
        assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"]), dashboard["uid"]
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(set(ids)) == len(ids), (dashboard["title"], ids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=[path.stem for path in DASHBOARDS])
def test_each_dashboard_selects_a_run_and_every_query_is_filtered_by_it(path: Path) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    uids = datasource_uids()
    [variable] = [v for v in dashboard["templating"]["list"] if v["name"] == "run_id"]
    assert variable["type"] == "query"
    assert variable["datasource"] == {"type": "prometheus", "uid": "prometheus"}
    query = variable["query"]
    assert (query["query"] if isinstance(query, dict) else query) == RUN_VARIABLE_QUERY

    targets = 0
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        source = panel["datasource"]
        assert uids.get(source["uid"]) == source["type"], (panel["title"], source)
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            targets += 1
            where = f"{dashboard['title']} / {panel['title']} / {target['refId']}"
            source = target.get("datasource", panel["datasource"])
            assert uids.get(source["uid"]) == source["type"] in ("prometheus", "loki"), where
            expr = target["expr"]
            if source["type"] == "loki":
                # The run is a stream label (loki/config.yaml); test_logql.py parses it.
                assert LOKI_RUN_FILTER in expr.partition("}")[0], where
                continue
            # Every selector of the query, not just one, is restricted to the run.
            selectors = re.findall(r"\besper_[a-z0-9_]+\{([^}]*)\}", expr)
            assert selectors, where
            assert len(selectors) == len(METRIC_NAME.findall(expr)), where
            assert all(RUN_FILTER in selector for selector in selectors), where
            unknown = metrics_in(expr) - CONTRACT_METRICS
            assert not unknown, f"{where}: not in docs/opentelemetry.md: {sorted(unknown)}"
    assert targets


def threshold_values(panel: dict[str, Any]) -> set[float]:
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] != "off", panel["title"]
    return {step["value"] for step in defaults["thresholds"]["steps"] if step["value"] is not None}


def test_ppo_health_draws_the_anomaly_thresholds_as_lines() -> None:
    [dashboard] = [d for d in dashboards() if d["title"] == "Esper — PPO health"]
    limits = AnomalyThresholds()
    assert (limits.ratio_explosion, limits.ratio_collapse, limits.value_collapse) == (
        5.0,
        0.1,
        0.1,
    )

    ratio = by_title(dashboard, "Ratio max / min")
    assert threshold_values(ratio) == {limits.ratio_explosion, limits.ratio_collapse}
    assert {metrics_in(t["expr"]).pop() for t in ratio["targets"]} == {
        "esper_ppo_ratio_max",
        "esper_ppo_ratio_min",
    }
    variance = by_title(dashboard, "Explained variance")
    assert threshold_values(variance) == {limits.value_collapse}
    assert metrics_in(variance["targets"][0]["expr"]) == {"esper_ppo_explained_variance"}

    queried = set().union(*(metrics_in(t["expr"]) for p in panels(dashboard) for t in p["targets"]))
    assert queried == {name for name in CONTRACT_METRICS if name.startswith("esper_ppo_")} - {
        "esper_ppo_update_duration_seconds"
    }
