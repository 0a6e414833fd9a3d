"""The PPO health figure: one panel per statistic of the updates, per batch, with the
anomaly detectors' thresholds dashed across the panels they judge, a dotted line through
every panel at each batch that had an anomaly, and below the panels a strip of the
anomalies by type, the first one's detail in the hover. Anomalies in no known batch have
no place on these axes: the table below the figure lists them.

The dotted lines are one trace per panel, segments separated by gaps, spanning the
panel's data: plotly validates every shape anew as shapes are added, which costs seconds
for the hundreds of lines of a long run, while a trace of any length costs nothing.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from plotly import graph_objects as go
from plotly.subplots import make_subplots

from app.rl.anomaly import AnomalyThresholds
from instrumentation.report.figures import (
    SEVERITY_COLORS,
    base_layout,
    line_mode,
    rounded,
    whole_numbers,
)
from instrumentation.report.history import SEVERITY_ORDER, AnomalyMark, BatchSeries, anomaly_label

# Panels, two per row: title and the BATCH_METRICS it draws.
PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("policy loss", ("policy_loss",)),
    ("value loss", ("value_loss",)),
    ("entropy", ("entropy",)),
    ("entropy coefficient", ("entropy_coef",)),
    ("approx KL divergence", ("approx_kl",)),
    ("clip fraction", ("clip_fraction",)),
    ("probability ratio, max and min (log scale)", ("ratio_max", "ratio_min")),
    ("explained variance", ("explained_variance",)),
)
_RATIO_PANEL = 7
_VARIANCE_PANEL = 8
THRESHOLD_COLOR = "#d62728"
# Fainter when there are many, so that the lines do not hide the statistics.
ANOMALY_LINE = "rgba(214, 39, 40, 0.5)"
ANOMALY_LINE_FAINT = "rgba(214, 39, 40, 0.2)"
_MANY_LINES = 30
_PANEL_HEIGHT = 230
_STRIP_HEIGHT = 0.5  # of a panel's
LOG_TICKS = [m * 10.0**e for e in range(-3, 4) for m in (1, 2, 5)]


def health_figure(
    series: BatchSeries, anomalies: Sequence[AnomalyMark], limits: AnomalyThresholds
) -> Any:
    """The figure for the updates of series, with those of anomalies that have a batch."""
    batches = sorted({mark.batch for mark in anomalies if mark.batch is not None})
    placed = [mark for mark in anomalies if mark.batch is not None]
    strip = bool(placed)
    rows = len(PANELS) // 2 + strip
    specs: list[list[dict[str, Any] | None]] = [[{}, {}] for _ in range(len(PANELS) // 2)]
    titles = [title for title, _ in PANELS]
    if strip:
        specs.append([{"colspan": 2}, None])
        titles.append("anomalies (hover for the detail)")
    heights = [1.0] * (len(PANELS) // 2) + [_STRIP_HEIGHT] * strip
    figure = make_subplots(
        rows=rows,
        cols=2,
        specs=specs,
        shared_xaxes="all",
        vertical_spacing=0.3 / rows,
        horizontal_spacing=0.08,
        subplot_titles=titles,
        row_heights=heights,
    )
    lines = _threshold_lines(limits)
    for panel, (_, names) in enumerate(PANELS, start=1):
        _panel(figure, panel, series, names, lines.get(panel, ()), batches)
    whole_numbers(figure, series.batches)
    row, col = _cell(_RATIO_PANEL)
    # Every tick labelled in full: plotly's own log ticks label 0.2 and 2 alike, "2".
    figure.update_yaxes(type="log", tickvals=LOG_TICKS, row=row, col=col)
    for col in (1, 2):
        figure.update_xaxes(showticklabels=True, row=len(PANELS) // 2, col=col)
    figure.update_xaxes(title_text="batch", row=rows, col=1)
    if not strip:
        figure.update_xaxes(title_text="batch", row=rows, col=2)
    if strip:
        _anomaly_strip(figure, placed, rows)
    height = round(_PANEL_HEIGHT * sum(heights)) + 60
    return base_layout(figure, height, showlegend=False, hovermode="x unified")


def _cell(panel: int) -> tuple[int, int]:
    """Row and column of a panel (1-based, two a row)."""
    return (panel - 1) // 2 + 1, (panel - 1) % 2 + 1


def _threshold_lines(limits: AnomalyThresholds) -> dict[int, tuple[tuple[str, float, str], ...]]:
    """Per panel: each threshold's label, value and where its label goes (inside the
    band it bounds, clear of the panel's title)."""
    return {
        _RATIO_PANEL: (
            (f"ratio explosion above {limits.ratio_explosion:g}", limits.ratio_explosion, "bottom"),
            (f"ratio collapse below {limits.ratio_collapse:g}", limits.ratio_collapse, "top"),
        ),
        _VARIANCE_PANEL: (
            (f"value collapse below {limits.value_collapse:g}", limits.value_collapse, "bottom"),
        ),
    }


def _panel(
    figure: Any,
    panel: int,
    series: BatchSeries,
    names: tuple[str, ...],
    thresholds: Sequence[tuple[str, float, str]],
    anomalous: Sequence[int],
) -> None:
    row, col = _cell(panel)
    values = [v for name in names for v in series.values[name] if v is not None]
    values += [value for _, value, _ in thresholds]
    if panel == _RATIO_PANEL:
        values = [value for value in values if value > 0]
    if anomalous and values:
        low, high = min(values), max(values)
        if low == high:  # a constant statistic: lines across its own height
            pad = abs(low) / 2 or 1.0
            low, high = (low / 2, low * 2) if panel == _RATIO_PANEL else (low - pad, high + pad)
        figure.add_trace(_anomaly_lines(anomalous, low, high), row=row, col=col)
    mode = line_mode(len(series.batches))
    for name in names:
        y = rounded(series.values[name])
        figure.add_trace(go.Scatter(x=series.batches, y=y, name=name, mode=mode), row=row, col=col)
    if series.batches:
        span = [min(series.batches), max(series.batches)]
        for label, value, side in thresholds:
            figure.add_trace(_threshold(span, label, value, side), row=row, col=col)


def _anomaly_lines(batches: Sequence[int], low: float, high: float) -> Any:
    x: list[int | None] = []
    y: list[float | None] = []
    for batch in batches:
        x += [batch, batch, None]
        y += [low, high, None]
    color = ANOMALY_LINE_FAINT if len(batches) > _MANY_LINES else ANOMALY_LINE
    return go.Scatter(
        x=x,
        y=y,
        mode="lines",
        name="anomaly",
        line={"color": color, "dash": "dot", "width": 1},
        hoverinfo="skip",
    )


def _threshold(span: list[int], label: str, value: float, side: str) -> Any:
    return go.Scatter(
        x=span,
        y=[value, value],
        name=label,
        mode="lines+text",
        text=["", label],
        textposition=f"{side} left",
        textfont={"color": THRESHOLD_COLOR, "size": 11},
        line={"color": THRESHOLD_COLOR, "dash": "dash", "width": 1},
        hoverinfo="skip",
    )


def _anomaly_strip(figure: Any, anomalies: Sequence[AnomalyMark], row: int) -> None:
    """The anomalies as markers, one row per type, coloured by severity."""
    for severity in SEVERITY_ORDER:
        marks = [mark for mark in anomalies if mark.severity is severity]
        if not marks:
            continue
        hover = [
            f"batch {m.batch}: {m.event_type} x{m.count}<br>{html.escape(m.detail)}" for m in marks
        ]
        trace = go.Scatter(
            x=[mark.batch for mark in marks],
            y=[anomaly_label(mark.event_type) for mark in marks],
            name=severity.value,
            mode="markers",
            marker={"symbol": "x", "size": 10, "color": SEVERITY_COLORS[severity]},
            hovertext=hover,
            hoverinfo="text",
        )
        figure.add_trace(trace, row=row, col=1)
    figure.update_yaxes(type="category", row=row, col=1)
