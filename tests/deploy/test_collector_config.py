"""Structure of otel-collector/config.yaml and how it meets compose, Jaeger, Prometheus, Loki.

No Docker engine here: the collector is not run, its configuration is checked the way the
collector would wire it (every referenced component defined, connectors on both sides)
and against the other files of the stack (ports, hosts, metric names).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from stack_files import load_yaml, published_targets

KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")
OTLP_GRPC_EXPORTERS = {"otlp", "otlp_grpc"}  # `otlp` is the deprecated alias (collector 0.144)


@pytest.fixture(scope="module")
def collector() -> dict[str, Any]:
    return load_yaml("otel-collector/config.yaml")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml("docker-compose.yml")


@pytest.fixture(scope="module")
def jaeger() -> dict[str, Any]:
    return load_yaml("jaeger/config.yaml")


@pytest.fixture(scope="module")
def prometheus() -> dict[str, Any]:
    return load_yaml("prometheus/prometheus.yml")


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def host_port(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint if "//" in endpoint else f"//{endpoint}")
    assert parts.hostname is not None and parts.port is not None, endpoint
    return parts.hostname, parts.port


def pipelines_of(config: dict[str, Any], signal: str) -> dict[str, dict[str, list[str]]]:
    pipelines = config["service"]["pipelines"]
    return {
        name: p for name, p in pipelines.items() if name == signal or name.startswith(signal + "/")
    }


# --- the collector config on its own ---------------------------------------------------


def test_every_component_a_pipeline_names_is_defined(collector: dict[str, Any]) -> None:
    defined = {kind: set(collector.get(kind) or {}) for kind in KINDS}
    for name, pipeline in collector["service"]["pipelines"].items():
        assert component_type(name) in ("traces", "metrics", "logs"), name
        assert pipeline.get("receivers"), f"{name}: no receiver"
        assert pipeline.get("exporters"), f"{name}: no exporter"
        for receiver in pipeline["receivers"]:
            assert receiver in defined["receivers"] | defined["connectors"], (name, receiver)
        for processor in pipeline.get("processors", []):
            assert processor in defined["processors"], (name, processor)
        for exporter in pipeline["exporters"]:
            assert exporter in defined["exporters"] | defined["connectors"], (name, exporter)


def test_every_defined_component_is_used(collector: dict[str, Any]) -> None:
    pipelines = collector["service"]["pipelines"].values()
    used = {
        kind: {c for p in pipelines for c in p.get(kind, [])}
        for kind in ("receivers", "processors", "exporters")
    }
    assert set(collector["receivers"]) <= used["receivers"]
    assert set(collector["processors"]) <= used["processors"]
    assert set(collector["exporters"]) <= used["exporters"]


def test_every_extension_is_enabled_and_every_enabled_one_defined(
    collector: dict[str, Any],
) -> None:
    assert set(collector["service"]["extensions"]) == set(collector["extensions"])
    assert "health_check" in collector["extensions"]


def test_connectors_are_exporters_on_one_side_and_receivers_on_the_other(
    collector: dict[str, Any],
) -> None:
    pipelines = collector["service"]["pipelines"].values()
    for connector in collector.get("connectors") or {}:
        assert any(connector in p["exporters"] for p in pipelines), connector
        assert any(connector in p["receivers"] for p in pipelines), connector


def test_spanmetrics_turns_traces_into_metrics(collector: dict[str, Any]) -> None:
    assert "spanmetrics" in collector["connectors"]
    assert any("spanmetrics" in p["exporters"] for p in pipelines_of(collector, "traces").values())
    assert any("spanmetrics" in p["receivers"] for p in pipelines_of(collector, "metrics").values())


def test_memory_limiter_comes_first_and_batch_is_in_every_pipeline(
    collector: dict[str, Any],
) -> None:
    limiter = collector["processors"]["memory_limiter"]
    assert limiter["check_interval"] and limiter["limit_mib"] > limiter["spike_limit_mib"] > 0
    for name, pipeline in collector["service"]["pipelines"].items():
        processors = pipeline["processors"]
        assert processors[0] == "memory_limiter", name
        assert "batch" in processors, name


def test_receivers_and_health_check_listen_on_all_interfaces(collector: dict[str, Any]) -> None:
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert host_port(protocols["grpc"]["endpoint"]) == ("0.0.0.0", 4317)
    assert host_port(protocols["http"]["endpoint"]) == ("0.0.0.0", 4318)
    assert host_port(collector["extensions"]["health_check"]["endpoint"])[0] == "0.0.0.0"


def test_prometheus_exporter_keeps_the_design_metric_names(collector: dict[str, Any]) -> None:
    # The contract's names (esper_events_total, esper_batch_duration_seconds, ...) need the unit
    # and type suffixes, which are the exporter's default.
    exporter = collector["exporters"]["prometheus"]
    assert exporter.get("add_metric_suffixes", True) is True
    assert exporter.get("translation_strategy", "UnderscoreEscapingWithSuffixes") == (
        "UnderscoreEscapingWithSuffixes"
    )
    assert "namespace" not in exporter, "a namespace would prefix every esper_* name"


# --- against the compose file and the trainer ---------------------------------------------


def test_the_receiver_ports_are_published_by_compose(
    collector: dict[str, Any], compose: dict[str, Any]
) -> None:
    published = published_targets(compose["services"]["otel-collector"])
    for protocol in collector["receivers"]["otlp"]["protocols"].values():
        assert host_port(protocol["endpoint"])[1] in published


def test_the_trainer_targets_the_receiver_of_its_protocol(
    collector: dict[str, Any], compose: dict[str, Any]
) -> None:
    env = compose["services"]["trainer"]["environment"]
    host, port = host_port(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert host == "otel-collector" and host in compose["services"]
    protocol = {"grpc": "grpc", "http/protobuf": "http"}[env["OTEL_EXPORTER_OTLP_PROTOCOL"]]
    receiver = collector["receivers"]["otlp"]["protocols"][protocol]
    assert host_port(receiver["endpoint"])[1] == port
    if protocol == "http":
        assert urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"]).scheme == "http"


def test_the_compose_file_mounts_this_config(compose: dict[str, Any]) -> None:
    service = compose["services"]["otel-collector"]
    mounts = [str(v).split(":")[:2] for v in service["volumes"]]
    command = " ".join(service["command"])
    assert any(
        src == "./otel-collector/config.yaml" and f"--config={dst}" in command
        for src, dst in mounts
    )


# --- traces reach Jaeger, metrics reach Prometheus ----------------------------------------


def test_traces_reach_jaeger_over_otlp(
    collector: dict[str, Any], compose: dict[str, Any], jaeger: dict[str, Any]
) -> None:
    targets = []
    for pipeline in pipelines_of(collector, "traces").values():
        for exporter in pipeline["exporters"]:
            if component_type(exporter) in OTLP_GRPC_EXPORTERS:
                config = collector["exporters"][exporter]
                targets.append(host_port(config["endpoint"]))
                assert config["tls"]["insecure"] is True
    assert ("jaeger", 4317) in targets, targets
    assert "jaeger" in compose["services"]
    # ... and Jaeger takes them in and stores them.
    jaeger_grpc = jaeger["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert host_port(jaeger_grpc) == ("0.0.0.0", 4317)
    traces = jaeger["service"]["pipelines"]["traces"]
    assert "otlp" in traces["receivers"]
    assert "jaeger_storage_exporter" in traces["exporters"]
    storage = jaeger["exporters"]["jaeger_storage_exporter"]["trace_storage"]
    assert storage in jaeger["extensions"]["jaeger_storage"]["backends"]
    assert jaeger["extensions"]["jaeger_query"]["storage"]["traces"] == storage


def test_metrics_reach_the_prometheus_exporter_that_prometheus_scrapes(
    collector: dict[str, Any], prometheus: dict[str, Any]
) -> None:
    exporters = {e for p in pipelines_of(collector, "metrics").values() for e in p["exporters"]}
    prometheus_exporters = [e for e in exporters if component_type(e) == "prometheus"]
    assert prometheus_exporters
    scraped = {
        target
        for job in prometheus["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    for exporter in prometheus_exporters:
        host, port = host_port(collector["exporters"][exporter]["endpoint"])
        assert host == "0.0.0.0"
        assert f"otel-collector:{port}" in scraped
    assert prometheus["global"]["scrape_interval"] == "5s"


def test_jaeger_monitor_tab_reads_the_spanmetrics_names(
    collector: dict[str, Any], jaeger: dict[str, Any], compose: dict[str, Any]
) -> None:
    query_storage = jaeger["extensions"]["jaeger_query"]["storage"]["metrics"]
    backend = jaeger["extensions"]["jaeger_storage"]["metric_backends"][query_storage]
    prom = backend["prometheus"]
    host, port = host_port(prom["endpoint"])
    assert host == "prometheus" and host in compose["services"] and port == 9090

    connector = collector["connectors"]["spanmetrics"]
    # connector namespace "traces.span.metrics" -> Prometheus "traces_span_metrics_..."
    assert connector["namespace"].replace(".", "_") == prom["metric_namespace"]
    # Jaeger appends `_total` and the unit word only when told the exporter added them.
    assert prom["normalize_calls"] is True and prom["normalize_duration"] is True
    assert connector["histogram"]["unit"] == prom["latency_unit"]
    assert connector["histogram"]["explicit"]["buckets"]


def test_the_exporter_sends_exemplars(collector: dict[str, Any]) -> None:
    # Exemplars (the trace_id of a histogram bucket's measurement) exist only in the
    # OpenMetrics format, which the exporter serves only when asked to.
    assert collector["exporters"]["prometheus"]["enable_open_metrics"] is True


# --- logs reach Loki -----------------------------------------------------------------------


def test_logs_reach_loki_over_its_native_otlp_endpoint(
    collector: dict[str, Any], compose: dict[str, Any]
) -> None:
    [logs] = pipelines_of(collector, "logs").values()
    assert "otlp" in logs["receivers"]
    exporters = [e for e in logs["exporters"] if component_type(e) == "otlp_http"]
    assert exporters, "no OTLP/HTTP exporter in the logs pipeline (`otlphttp` is deprecated)"
    loki = load_yaml("loki/config.yaml")
    for exporter in exporters:
        endpoint = urlsplit(collector["exporters"][exporter]["endpoint"])
        # The exporter appends /v1/logs: Loki's route is /otlp/v1/logs.
        assert (endpoint.scheme, endpoint.hostname, endpoint.path) == ("http", "loki", "/otlp")
        assert endpoint.port == loki["server"]["http_listen_port"]
    # The collector starts once Loki answers, so the first records are not refused.
    depends = compose["services"]["otel-collector"]["depends_on"]
    assert depends["loki"]["condition"] == "service_healthy"
