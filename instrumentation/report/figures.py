"""The report's plotly figures, each built from the folded history (`history.py`), never
from events: accuracy and reward per batch (or per episode, for a log without PPO
updates) and events by type, with the look every figure shares. PPO health is
`health.py`, the seed swimlane `swimlane.py`.

Text from the log is HTML-escaped before it reaches a figure: plotly renders a subset of
HTML in hover labels, so an unescaped `<a href>` from a log would become a link. (Event
type names are safe: the reader accepts only the known ones.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from plotly import graph_objects as go
from plotly.subplots import make_subplots

from app.contracts.events import Severity
from instrumentation.report.history import SEVERITY_ORDER, BatchSeries

SEVERITY_COLORS = {
    Severity.DEBUG: "#9e9e9e",
    Severity.INFO: "#4c78a8",
    Severity.WARNING: "#f58518",
    Severity.ERROR: "#d62728",
    Severity.CRITICAL: "#7f0000",
}
_DENSE_POINTS = 150
# Up to this span, a tick on every number: none between two batches.
_TICK_EVERY_NUMBER = 20


def base_layout(figure: Any, height: int, **layout: Any) -> Any:
    """The look every figure shares: white template, legend above the plot area (never
    over the data), room for titles."""
    figure.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 70, "r": 30, "t": 60, "b": 50},
        font={"size": 13},
        legend={"orientation": "h", "x": 0, "y": 1.02, "xanchor": "left", "yanchor": "bottom"},
        hoverlabel={"namelength": -1},
        **layout,
    )
    return figure


def line_mode(points: int) -> str:
    """Markers on the lines while there are few enough points to tell apart."""
    return "lines" if points > _DENSE_POINTS else "lines+markers"


def whole_numbers(figure: Any, values: Sequence[int]) -> None:
    """Whole numbers (batches, episodes) on every x axis of figure."""
    few = bool(values) and max(values) - min(values) <= _TICK_EVERY_NUMBER
    figure.update_xaxes(dtick=1 if few else None, tickformat="d")


def rounded(values: Sequence[float | None]) -> list[float | None]:
    """values to 6 significant digits: all a chart shows, and a third of the bytes."""
    return [None if value is None else float(f"{value:.6g}") for value in values]


def accuracy_figure(series: BatchSeries) -> Any:
    """Accuracy (the batch's average and the rolling average) over reward, per batch."""
    figure = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.6, 0.4]
    )
    batches, values, mode = series.batches, series.values, line_mode(len(series.batches))
    lines = (
        ("avg_accuracy", "batch average accuracy", 1, {"width": 1}),
        ("rolling_avg_accuracy", "rolling average accuracy", 1, {"width": 3}),
        ("avg_reward", "batch average reward", 2, {"width": 2}),
    )
    for name, label, row, line in lines:
        trace = go.Scatter(x=batches, y=rounded(values[name]), name=label, mode=mode, line=line)
        figure.add_trace(trace, row=row, col=1)
    figure.update_yaxes(title_text="accuracy (%)", row=1, col=1)
    figure.update_yaxes(title_text="reward per episode", row=2, col=1)
    figure.update_xaxes(title_text="batch", row=2, col=1)
    whole_numbers(figure, batches)
    return base_layout(figure, 500, hovermode="x unified")


def episode_accuracy_figure(per_env: dict[int, list[tuple[int, float]]]) -> Any:
    """Each environment's final validation accuracy per episode, for a log without PPO
    updates."""
    figure = go.Figure()
    for env_id, points in sorted(per_env.items()):
        episodes = [episode for episode, _ in points]
        accuracy = rounded([value for _, value in points])
        mode = line_mode(len(points))
        figure.add_trace(go.Scatter(x=episodes, y=accuracy, name=f"env {env_id}", mode=mode))
    figure.update_xaxes(title_text="episode of the environment")
    whole_numbers(figure, [episode for points in per_env.values() for episode, _ in points])
    figure.update_yaxes(title_text="final validation accuracy (%)")
    return base_layout(figure, 420, hovermode="x unified")


def events_figure(by_type: dict[str, int], severity: dict[str, Severity]) -> Any:
    """Events by type, the most frequent first, coloured by the type's worst severity."""
    ordered = sorted(by_type, key=lambda name: (-by_type[name], name))
    figure = go.Figure()
    for level in SEVERITY_ORDER:
        names = [name for name in ordered if severity[name] is level]
        if not names:
            continue
        counts = [by_type[name] for name in names]
        figure.add_trace(
            go.Bar(
                x=counts,
                y=names,
                orientation="h",
                name=level.value,
                marker_color=SEVERITY_COLORS[level],
                text=counts,
                textposition="outside",
                cliponaxis=False,
            )
        )
    figure.update_yaxes(categoryorder="array", categoryarray=ordered, autorange="reversed")
    figure.update_xaxes(title_text="events")
    return base_layout(figure, 130 + 26 * len(ordered), barmode="overlay")
