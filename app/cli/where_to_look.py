"""The last lines of a run's summary: where to look at the run now that it has ended.

    report:    esper report telemetry/telemetry_2026-03-01_101500
    jaeger:    http://localhost:16686/search?service=esper-training&tags=...
    grafana:   http://localhost:3000/d/esper-training-progress?var-run_id=...
               (one line per dashboard)

The Jaeger line only when spans reached an OTLP endpoint (one sent is enough; when every
one was lost there is nothing to find), the Grafana lines only when metrics did (a
collector then feeds the compose stack's Jaeger and Prometheus). Both search the run's
own time, give or take `MARGIN_S`, so that the links still find it after the UIs'
default "last hour" has moved on. The addresses are the compose stack's
published ports (docker-compose.yml) unless ESPER_JAEGER_URL or ESPER_GRAFANA_URL name
other base URLs; user info in them is not printed.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

from app.contracts.telemetry_names import RUN_ID
from instrumentation.otel.redaction import redact
from instrumentation.otel.summary import OtlpTargets

JAEGER_URL = "http://localhost:16686"
GRAFANA_URL = "http://localhost:3000"
JAEGER_VARIABLE = "ESPER_JAEGER_URL"
GRAFANA_VARIABLE = "ESPER_GRAFANA_URL"
# The uids of grafana/dashboards/*.json, the run's overview first, and their run variable.
DASHBOARDS = (
    "esper-training-progress",
    "esper-ppo-health",
    "esper-events-seeds",
    "esper-durations-telemetry",
)
RUN_VARIABLE = "run_id"
# The export after training, and clocks that disagree a little.
MARGIN_S = 60.0
_LABEL = "  {:<11}"


@dataclass(frozen=True)
class RunWindow:
    """When the run ran, in seconds since the epoch: from before its `esper.run` span
    opened to the end of training (the export and the report come after)."""

    start_s: float
    end_s: float

    def bounds(self, per_second: int) -> tuple[int, int]:
        """The window widened by MARGIN_S, in units of 1/per_second s."""
        return (
            int((self.start_s - MARGIN_S) * per_second),
            int((self.end_s + MARGIN_S) * per_second),
        )


def where_to_look(
    run_dir: Path,
    run_id: str,
    targets: OtlpTargets,
    window: RunWindow,
    environ: Mapping[str, str] = os.environ,
    *,
    report: str | None = None,
) -> list[str]:
    """The lines; `report` is the report `--report` wrote, else the command to write it."""
    made = report if report is not None else f"esper report {shlex.quote(str(run_dir))}"
    lines = [_labelled("report:", made)]
    if targets.traces:
        base = _base(environ, JAEGER_VARIABLE, JAEGER_URL)
        search = jaeger_search(base, targets.service_name, run_id, window)
        lines.append(_labelled("jaeger:", search))
    if targets.metrics:
        base = _base(environ, GRAFANA_VARIABLE, GRAFANA_URL)
        links = [grafana_dashboard(base, uid, run_id, window) for uid in DASHBOARDS]
        lines += [_labelled("grafana:" if n == 0 else "", link) for n, link in enumerate(links)]
    return lines


def jaeger_search(base: str, service: str, run_id: str, window: RunWindow) -> str:
    """Jaeger's search page for the run's traces: its service and the `esper.run_id` tag
    (jaeger-ui reads `tags` as a JSON object, `start` and `end` in microseconds)."""
    start, end = window.bounds(1_000_000)
    query = {
        "service": service,
        "tags": json.dumps({RUN_ID: run_id}, separators=(",", ":")),
        "lookback": "custom",
        "start": start,
        "end": end,
        "limit": 1500,
    }
    return f"{base}/search?{urlencode(query, quote_via=quote)}"


def grafana_dashboard(base: str, uid: str, run_id: str, window: RunWindow) -> str:
    """A dashboard with the run selected and its time range (`from`/`to` in ms)."""
    start, end = window.bounds(1000)
    query = {f"var-{RUN_VARIABLE}": run_id, "from": start, "to": end}
    return f"{base}/d/{uid}?{urlencode(query, quote_via=quote)}"


def _base(environ: Mapping[str, str], variable: str, default: str) -> str:
    return redact(environ.get(variable, "").strip().rstrip("/") or default)


def _labelled(label: str, text: str) -> str:
    return _LABEL.format(label) + text
