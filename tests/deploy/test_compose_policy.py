"""Compose policy: pinned images, loopback-only ports, startup order, volumes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_SERVICES = {"otel-collector", "jaeger", "prometheus", "grafana", "loki", "trainer"}
# The paths each pinned image declares a VOLUME for (its Dockerfile at that tag:
# prometheus/prometheus v3.14.0, jaegertracing/jaeger v2.17.0 cmd/jaeger/Dockerfile; the
# loki, grafana and collector images declare none that this stack leaves uncovered). A
# container gets a new anonymous volume for each such path that no mount covers, and
# `docker compose down` leaves it behind.
IMAGE_VOLUMES = {"prom/prometheus": {"/prometheus"}, "jaegertracing/jaeger": {"/tmp"}}


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def published_ports(service: dict[str, Any]) -> list[tuple[str | None, int, int]]:
    """(host_ip, published, target) for each published port, short or long syntax."""
    result: list[tuple[str | None, int, int]] = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            result.append(
                (entry.get("host_ip"), int(entry["published"]), int(str(entry["target"])))
            )
            continue
        spec = str(entry).split("/")[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            result.append((parts[0].strip("[]"), int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            result.append((None, int(parts[0]), int(parts[1])))
        else:
            result.append((None, int(parts[0]), int(parts[0])))
    return result


def test_the_stack_has_the_designed_services() -> None:
    assert set(_services()) >= EXPECTED_SERVICES


def test_every_image_is_pinned_to_a_version() -> None:
    for name, service in _services().items():
        if "image" not in service:
            assert "build" in service, f"{name}: neither image nor build"
            continue
        image = str(service["image"]).partition("@")[0]
        _, sep, tag = image.rpartition(":")
        assert sep and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} is not pinned"
        assert re.search(r"\d", tag), f"{name}: tag {tag!r} names no version"


def test_every_published_port_binds_loopback_only() -> None:
    seen = 0
    for name, service in _services().items():
        for host_ip, published, target in published_ports(service):
            seen += 1
            assert host_ip == "127.0.0.1", f"{name}: port {published}:{target} binds {host_ip}"
    assert seen >= 4


@pytest.mark.parametrize(
    ("service", "port"),
    [
        ("grafana", 3000),
        ("jaeger", 16686),
        ("prometheus", 9090),
        ("loki", 3100),
        ("otel-collector", 4318),
    ],
)
def test_the_readme_urls_are_published(service: str, port: int) -> None:
    assert (port, port) in [(p, t) for _, p, t in published_ports(_services()[service])]


def test_the_trainer_starts_after_the_collector_is_ready() -> None:
    services = _services()
    depends = services["trainer"]["depends_on"]
    assert isinstance(depends, dict), "depends_on needs the long syntax to carry a condition"
    assert "condition" in depends["otel-collector"]
    # The collector's image is distroless, so readiness comes from a one-shot probe of its
    # health_check extension that the trainer waits for.
    ready = [
        dep
        for dep, spec in depends.items()
        if spec.get("condition") in ("service_healthy", "service_completed_successfully")
    ]
    assert ready, "the trainer waits for nothing but container start"
    for dep in ready:
        probe = services[dep]
        if depends[dep]["condition"] == "service_completed_successfully":
            command = " ".join(map(str, probe.get("command", [])))
            assert "otel-collector:13133" in command
        else:
            assert dep == "otel-collector" and "healthcheck" in probe


@pytest.mark.parametrize("name", ["prometheus", "grafana", "jaeger"])
def test_backends_have_healthchecks(name: str) -> None:
    test = _services()[name]["healthcheck"]["test"]
    assert "wget" in " ".join(test)


def test_the_jsonl_log_lives_on_a_named_volume() -> None:
    compose = _compose()
    named = set(compose.get("volumes") or {})
    trainer = compose["services"]["trainer"]
    command = " ".join(map(str, trainer.get("command", [])))
    match = re.search(r"--telemetry-dir[= ](\S+)", command)
    assert match, "the trainer's telemetry dir is not set"
    telemetry_dir = match.group(1)
    mounts = []
    for volume in trainer["volumes"]:
        if isinstance(volume, dict):
            mounts.append((volume["source"], volume["target"]))
        else:
            source, target = str(volume).split(":")[:2]
            mounts.append((source, target))
    assert any(source in named and target == telemetry_dir for source, target in mounts)


def test_the_trainer_exports_to_the_collector() -> None:
    env = _services()["trainer"]["environment"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://otel-collector:")
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] in ("grpc", "http/protobuf")
    assert int(env["OTEL_METRIC_EXPORT_INTERVAL"]) <= 15000
    assert env["OTEL_SERVICE_NAME"] == "esper-training"


@pytest.mark.parametrize(
    ("variable", "flag"),
    [
        ("ESPER_ENVS", "--envs"),
        ("ESPER_EPISODES", "--episodes"),
        ("ESPER_MAX_EPOCHS", "--max-epochs"),
        ("ESPER_CONTROLLER", "--controller"),
    ],
)
def test_training_parameters_come_from_the_environment(variable: str, flag: str) -> None:
    command = [str(part) for part in _services()["trainer"]["command"]]
    assert any(
        re.fullmatch(rf"{re.escape(flag)}=\$\{{{variable}:-[^}}]+\}}", part) for part in command
    ), command


def test_the_process_count_comes_from_the_environment_and_defaults_to_one() -> None:
    # The image's entry point reads it; one process is `esper train` as before.
    env = _services()["trainer"]["environment"]
    assert env["ESPER_NPROC"] == "${ESPER_NPROC:-1}"


def test_grafana_mounts_the_provisioning_read_only_and_allows_anonymous_viewers() -> None:
    grafana = _services()["grafana"]
    volumes = [str(v) for v in grafana["volumes"]]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in volumes
    env = grafana["environment"]
    assert str(env["GF_AUTH_ANONYMOUS_ENABLED"]).lower() == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def mounts(service: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(source, target) of each volume entry, short or long syntax; a tmpfs has no source."""
    found: list[tuple[str | None, str]] = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found.append((volume.get("source"), volume["target"]))
            continue
        parts = str(volume).split(":")
        found.append((parts[0], parts[1]) if len(parts) > 1 else (None, parts[0]))
    found.extend((None, str(path).split(":")[0]) for path in service.get("tmpfs", []))
    return found


def test_no_container_leaves_an_anonymous_volume_behind() -> None:
    for name, service in _services().items():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                assert volume["type"] == "tmpfs" or volume.get("source"), (name, volume)
            else:
                assert ":" in str(volume), f"{name}: {volume} is an anonymous volume"
        image = str(service.get("image", "")).partition("@")[0].rpartition(":")[0]
        covered = {target for _, target in mounts(service)}
        for path in IMAGE_VOLUMES.get(image, set()):
            assert path in covered, f"{name}: the image's VOLUME {path} gets an anonymous volume"


def test_the_readiness_probe_covers_the_volume_of_the_image_it_borrows() -> None:
    probe = _services()["otel-collector-ready"]
    image = str(probe["image"]).partition("@")[0].rpartition(":")[0]
    assert IMAGE_VOLUMES.get(image), "the probe's image declares no VOLUME: update IMAGE_VOLUMES"
    assert IMAGE_VOLUMES[image] <= {target for _, target in mounts(probe)}


def test_prometheus_stores_exemplars() -> None:
    # Still a feature flag in Prometheus v3.14.0 (cmd/prometheus/main.go).
    command = [str(part) for part in _services()["prometheus"]["command"]]
    features = {
        feature
        for part in command
        if part.startswith("--enable-feature=")
        for feature in part.partition("=")[2].split(",")
    }
    assert "exemplar-storage" in features
