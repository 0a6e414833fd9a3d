"""The report page: one self-contained HTML file that opens from disk with no network.

plotly.js is inlined once, in the head; each figure is a `<div>` with the script that
draws it, JSON in which plotly escapes `<` (so no string from the log can close the
script). Styles are inline too; the page loads nothing: no font, no stylesheet, no
script from elsewhere. Text from the log is escaped where it is put into the page
(`tables.py`, `figures.py`, `swimlane.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import plotly.io
import plotly.offline

from app.plurals import counted
from instrumentation.report import tables
from instrumentation.report.figures import accuracy_figure, episode_accuracy_figure, events_figure
from instrumentation.report.health import health_figure
from instrumentation.report.history import RunHistory
from instrumentation.report.inputs import RecordedRun, Thresholds
from instrumentation.report.swimlane import swimlane_figure

# No link to plotly's site, nothing sent anywhere; figures follow the page's width.
PLOT_CONFIG = {"displaylogo": False, "responsive": True}

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
  color: #1f2933; background: #f5f7fa; }
main { max-width: 1240px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 1.6rem; margin: 8px 0 4px; }
h2 { font-size: 1.25rem; margin: 0 0 8px; }
.subtitle { color: #52606d; margin: 0 0 16px; overflow-wrap: anywhere; }
section { background: #fff; border: 1px solid #e4e7eb; border-radius: 6px;
  padding: 16px 20px; margin: 16px 0; }
.note, .empty { color: #52606d; }
.empty { font-style: italic; }
table { border-collapse: collapse; font-size: 0.92rem; }
th, td { text-align: left; padding: 3px 14px 3px 0; vertical-align: top;
  overflow-wrap: anywhere; }
thead th { border-bottom: 1px solid #cbd2d9; }
tbody th { font-weight: 600; white-space: nowrap; }
.columns { columns: 3 320px; column-gap: 28px; font-size: 0.92rem; }
.setting { break-inside: avoid; padding: 2px 0; overflow-wrap: anywhere; }
.setting span { font-weight: 600; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr));
  gap: 8px 32px; }
"""


def render(history: RunHistory, record: RecordedRun, drawn: Thresholds, source: Path) -> str:
    """The whole page for the run read from source."""
    run_id = record.values.get("run_id")
    title = f"Esper run {run_id}" if isinstance(run_id, str) else f"Esper run log {source.name}"
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    sections = (
        _summary(history, record),
        _accuracy(history),
        _health(history, drawn),
        _seeds(history),
        _events(history),
        _configuration(record),
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style>"
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>'
        f"</head><body><main><h1>{escape(title)}</h1>"
        f'<p class="subtitle">{escape(str(source))}, report made {generated}</p>'
        f"{''.join(sections)}</main></body></html>\n"
    )


def _section(key: str, heading: str, *parts: str) -> str:
    return f'<section id="{key}"><h2>{heading}</h2>{"".join(parts)}</section>'


def _figure(figure: Any, key: str) -> str:
    html: str = plotly.io.to_html(
        figure,
        full_html=False,
        include_plotlyjs=False,
        config=PLOT_CONFIG,
        div_id=f"figure-{key}",
    )
    return html


def _empty(sentence: str) -> str:
    return f'<p class="empty">{sentence}</p>'


def _summary(history: RunHistory, record: RecordedRun) -> str:
    computed = tables.table(tables.summary_rows(history))
    recorded = list(tables.run_file_rows(record))
    run_file = tables.table(recorded) if recorded else _empty("no run.json beside the log")
    quality = list(tables.quality_rows(history))
    left_out = tables.table(quality) if quality else _empty("every line was read and placed")
    return _section(
        "summary",
        "Summary",
        '<div class="grid"><div><h3>From the events</h3>',
        computed,
        "</div><div><h3>From run.json</h3>",
        run_file,
        "</div></div><h3>Left out</h3>",
        left_out,
    )


def _accuracy(history: RunHistory) -> str:
    heading = "Accuracy and reward per batch"
    if history.batches.batches:
        return _section("accuracy", heading, _figure(accuracy_figure(history.batches), "accuracy"))
    per_episode = history.seeds.episode_accuracy
    if per_episode:
        note = (
            '<p class="note">No PPO updates in this log (a heuristic or static controller): '
            "each environment's validation accuracy at the end of each episode.</p>"
        )
        figure = _figure(episode_accuracy_figure(per_episode), "accuracy")
        return _section("accuracy", "Accuracy per episode", note, figure)
    return _section("accuracy", heading, _empty("no batches in this log"))


def _health(history: RunHistory, drawn: Thresholds) -> str:
    heading = "PPO health"
    anomalies = tables.table(
        tables.anomaly_rows(history),
        header=("anomaly", "events", "batches", "first batch", "first detail"),
        css="list",
    )
    if not history.anomaly_counts:
        anomalies = _empty("no anomalies (no event of severity warning or worse)")
    note = f'<p class="note">{tables.threshold_note(drawn)}</p>'
    if not history.batches.batches:
        return _section("health", heading, _empty("no PPO updates in this log"), anomalies)
    marks = list(history.anomalies.values())
    figure = _figure(health_figure(history.batches, marks, drawn.limits), "health")
    return _section("health", heading, note, figure, anomalies)


def _seeds(history: RunHistory) -> str:
    heading = "Seeds by environment"
    seeds = history.seeds
    by_blueprint = tables.table(
        tables.blueprint_rows(history),
        header=("blueprint", "germinated", "fossilized", "culled"),
        css="list",
    )
    if not seeds.germinated and not seeds.fossilized and not seeds.culled:
        by_blueprint = ""
    if not seeds.segments and not seeds.ends:
        return _section("seeds", heading, _empty("no seed to draw in this log"), by_blueprint)
    figure = _figure(swimlane_figure(seeds, history.first), "seeds")
    return _section("seeds", heading, figure, by_blueprint)


def _events(history: RunHistory) -> str:
    if not history.by_type:
        return _section("events", "Events by type", _empty("no events in this log"))
    figure = events_figure(dict(history.by_type), history.type_severity)
    return _section("events", "Events by type", _figure(figure, "events"))


def _configuration(record: RecordedRun) -> str:
    rows = list(tables.config_rows(record.config))
    if not rows:
        missing = "no configuration in run.json" if record.values else "no run.json beside the log"
        return _section("configuration", "Configuration", _empty(missing))
    settings = "".join(
        f'<div class="setting"><span>{key}</span> = {value}</div>' for key, value in rows
    )
    body = f'<div class="columns">{settings}</div>'
    return _section("configuration", f"Configuration ({counted(len(rows), 'setting')})", body)
