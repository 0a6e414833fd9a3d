"""The stack's configuration files as the deploy tests read them, and the two renaming rules
that tie them together: how Grafana reads a provisioned string, and what Loki calls an
OpenTelemetry attribute. Imported as `from stack_files import ...` (pytest puts this
directory on sys.path for the tests in it)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DATASOURCES = "grafana/provisioning/datasources/datasources.yaml"
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
LOKI_TYPE = "loki"


def load_yaml(relative: str) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / relative).read_text(encoding="utf-8"))
    assert isinstance(data, dict), relative
    return data


def compose_services() -> dict[str, dict[str, Any]]:
    services = load_yaml("docker-compose.yml")["services"]
    assert isinstance(services, dict)
    return services


def data_sources() -> dict[str, dict[str, Any]]:
    """Provisioned data source uid -> its entry."""
    return {source["uid"]: source for source in load_yaml(DATASOURCES)["datasources"]}


def grafana_reads(value: str) -> str:
    """A provisioned jsonData string as Grafana uses it: provisioning expands environment
    variables in every such string and keeps `$$` as a literal `$` (Grafana's
    pkg/services/provisioning/values). The files write every `$` doubled, so that no
    Grafana variable is taken for an (empty) environment variable."""
    assert "$" not in value.replace("$$", ""), f"a single $ would be expanded: {value!r}"
    return value.replace("$$", "$")


def loki_label(attribute: str) -> str:
    """What Loki names an OpenTelemetry attribute, as a stream label or as structured
    metadata: Prometheus' label namer (grafana/loki pkg/loghttp/push/otlp.go), which turns
    every character outside [a-zA-Z0-9_] into `_`."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", attribute)


def published_targets(service: dict[str, Any]) -> set[int]:
    """The container ports a compose service publishes, short or long syntax."""
    targets = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            targets.add(int(entry["target"]))
        else:
            targets.add(int(str(entry).split("/")[0].rsplit(":", 1)[-1]))
    return targets


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those nested in rows included."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def loki_panel_queries() -> list[tuple[str, str]]:
    """(where, expr) of every dashboard target that queries a Loki data source."""
    loki_uids = {uid for uid, source in data_sources().items() if source["type"] == LOKI_TYPE}
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                source = target.get("datasource", panel.get("datasource", {}))
                if source.get("uid") in loki_uids:
                    where = f"{dashboard['title']} / {panel['title']} / {target['refId']}"
                    found.append((where, target["expr"]))
    return found
