"""loki/config.yaml: single-process Loki on a named volume, taking OTLP logs with their
attributes as structured metadata and a run's id as a stream label; and how compose and
Grafana reach it. Checked as files (no Loki here); the keys follow grafana/loki v3.7.6."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from stack_files import compose_services, data_sources, load_yaml, published_targets

from app.contracts import telemetry_names as names
from instrumentation.otel.environment import EVENT_ATTRIBUTE_LIMIT

ACTIONS = {"index_label", "structured_metadata", "drop"}  # pkg/loghttp/push/otlp_config.go


@pytest.fixture(scope="module")
def loki() -> dict[str, Any]:
    return load_yaml("loki/config.yaml")


@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    return compose_services()["loki"]


def index_labels(loki: dict[str, Any]) -> set[str]:
    """The resource attributes that become stream labels."""
    resource = loki["limits_config"]["otlp_config"]["resource_attributes"]
    labels: set[str] = set()
    for rule in resource["attributes_config"]:
        assert rule["action"] in ACTIONS, rule
        assert bool(rule.get("attributes")) != bool(rule.get("regex")), rule
        if rule["action"] == "index_label":
            labels.update(rule["attributes"])
    return labels


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Mount target -> source (a named volume or a host path) of the short syntax."""
    found = {}
    for volume in service["volumes"]:
        source, target = str(volume).split(":")[:2]
        found[target] = source
    return found


def test_loki_runs_this_config(service: dict[str, Any]) -> None:
    targets = [t for t, source in mounts(service).items() if source == "./loki/config.yaml"]
    assert targets, "loki/config.yaml is not mounted"
    assert f"-config.file={targets[0]}" in service["command"]


def test_chunks_index_and_rules_live_on_a_named_volume(
    loki: dict[str, Any], service: dict[str, Any]
) -> None:
    named = set(load_yaml("docker-compose.yml")["volumes"])
    prefix = loki["common"]["path_prefix"]
    assert mounts(service).get(prefix) in named, f"{prefix} is not on a named volume"
    filesystem = loki["common"]["storage"]["filesystem"]
    for directory in (filesystem["chunks_directory"], filesystem["rules_directory"]):
        assert directory.startswith(prefix + "/"), directory


def test_one_process_one_tenant(loki: dict[str, Any]) -> None:
    assert loki["auth_enabled"] is False
    assert loki["common"]["replication_factor"] == 1
    assert loki["common"]["ring"]["kvstore"]["store"] == "inmemory"


def test_the_schema_can_hold_structured_metadata(loki: dict[str, Any]) -> None:
    # Structured metadata needs the TSDB index with schema v13 (Loki 3 refuses it otherwise).
    latest = max(loki["schema_config"]["configs"], key=lambda period: str(period["from"]))
    assert (latest["store"], latest["schema"], latest["object_store"]) == (
        "tsdb",
        "v13",
        "filesystem",
    )
    assert loki["limits_config"]["allow_structured_metadata"] is True


def test_a_run_and_its_service_are_stream_labels(loki: dict[str, Any]) -> None:
    # LogQL selects a run with {esper_run_id="..."}; everything else stays structured
    # metadata, so a stream is one process of one run and no more.
    labels = index_labels(loki)
    assert {"service.name", names.RUN_ID} <= labels
    assert labels <= {"service.name", "service.instance.id", names.RUN_ID}
    # Without this, Loki's default list would be prepended and decide the labels instead.
    assert loki["limits_config"]["otlp_config"]["resource_attributes"]["ignore_defaults"]


def test_a_replayed_run_is_kept_whatever_its_age(loki: dict[str, Any]) -> None:
    """`esper replay` sends events with their original timestamps: Loki must neither
    refuse old lines (its default past 7 days) nor delete them at the next compaction,
    and its schema must cover the dates of old logs."""
    limits = loki["limits_config"]
    assert limits["reject_old_samples"] is False
    assert "retention_period" not in limits
    assert not loki.get("compactor", {}).get("retention_enabled", False)
    first = loki["schema_config"]["configs"][0]["from"]
    assert str(first) <= "2020-01-01"


def test_a_record_at_the_attribute_limit_fits_loki(loki: dict[str, Any]) -> None:
    """A record may hold EVENT_ATTRIBUTE_LIMIT attributes; Loki discards a line with more
    structured metadata entries than its limit (and the resource and its own fields add
    some)."""
    limit = loki["limits_config"]["max_structured_metadata_entries_count"]
    assert limit >= EVENT_ATTRIBUTE_LIMIT + 20


def test_the_healthcheck_uses_the_binary_itself(service: dict[str, Any]) -> None:
    # The image is distroless (no shell, no wget): exec form, Loki's own /ready probe.
    assert service["healthcheck"]["test"] == ["CMD", "/usr/bin/loki", "-health"]


def test_grafana_reaches_the_port_loki_listens_on(
    loki: dict[str, Any], service: dict[str, Any]
) -> None:
    port = loki["server"]["http_listen_port"]
    assert port in published_targets(service)
    url = urlsplit(data_sources()["loki"]["url"])
    assert (url.scheme, url.hostname, url.port) == ("http", "loki", port)
