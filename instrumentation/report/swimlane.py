"""The seed swimlane figure: one lane per environment, each seed a row of horizontal bars,
one per stage in a fixed colour, its end marked (a star when fossilized, a cross when
culled). Hovering a bar or a marker names the seed, its blueprint, the stage and its
length.

The x axis is the environment's epoch in run order when the log gives every seed event an
epoch, else the seconds since the log's first event (`seeds.py` says why both exist).
Seed ids and blueprints come from the log: they are HTML-escaped, as plotly renders a
subset of HTML in hover labels.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from plotly import graph_objects as go

from instrumentation.report.figures import base_layout
from instrumentation.report.seeds import STAGE_NAMES, Position, SeedEnd, SeedHistory, Segment

STAGE_COLORS = {
    "DORMANT": "#bdbdbd",
    "GERMINATED": "#a6d854",
    "TRAINING": "#4c78a8",
    "BLENDING": "#b279a2",
    "SHADOWING": "#f58518",
    "PROBATIONARY": "#eeca3b",
    "FOSSILIZED": "#1b7837",
    "CULLED": "#d62728",
    "EMBARGOED": "#7f7f7f",
}
_MAX_EPISODE_TICKS = 30
OUTCOME_MARKERS = {
    "fossilized": {"symbol": "star", "size": 13, "color": "#1b7837"},
    "culled": {"symbol": "x", "size": 11, "color": "#d62728"},
}


class _Axis:
    """Turns positions into x values, by epoch or by seconds since `origin`."""

    def __init__(self, by_epoch: bool, origin: float) -> None:
        self.by_epoch = by_epoch
        self._origin = origin

    def x(self, position: Position) -> float:
        if self.by_epoch and position.epoch is not None:
            return position.epoch
        return round(position.seconds - self._origin, 2)

    @property
    def length(self) -> str:
        """A bar's length and start in hover text (plotly's template syntax)."""
        if self.by_epoch:
            return "%{x} epochs from epoch %{customdata[1]}"
        return "%{x:.1f} s from %{customdata[1]} s"

    @property
    def title(self) -> str:
        if self.by_epoch:
            return "epoch of the environment, its episodes one after another"
        return "seconds since the log's first event (this log gives seed events no epoch)"


def swimlane_figure(seeds: SeedHistory, first: datetime | None) -> Any:
    """The seeds of every environment; `first`, the log's first event, is the origin of
    a time axis. Segments of no length (a stage left in the epoch it began) are not
    drawn."""
    axis = _Axis(seeds.has_epochs, first.timestamp() if first else 0.0)
    figure = go.Figure()
    for stage in STAGE_NAMES:
        segments = [
            s for s in seeds.segments if s.stage == stage and axis.x(s.end) > axis.x(s.start)
        ]
        if segments:
            figure.add_trace(_stage_bars(stage, segments, axis))
    for outcome, marker in OUTCOME_MARKERS.items():
        ends = [end for end in seeds.ends if end.outcome == outcome]
        if ends:
            figure.add_trace(_outcome_markers(outcome, marker, ends, axis))
    lanes = [_lane(env_id) for env_id in seeds.env_ids]
    figure.update_yaxes(
        type="category", categoryorder="array", categoryarray=lanes, autorange="reversed"
    )
    figure.update_xaxes(title_text=axis.title, rangemode="tozero")
    _episode_ticks(figure, seeds, axis)
    height = 150 + 40 * max(len(lanes), 2)
    return base_layout(figure, height, barmode="overlay", bargap=0.35, hovermode="closest")


def _episode_ticks(figure: Any, seeds: SeedHistory, axis: _Axis) -> None:
    """A tick, and its grid line, at every episode's start, while they stay apart."""
    length = seeds.episode_epochs
    ends = [axis.x(s.end) for s in seeds.segments] + [axis.x(e.at) for e in seeds.ends]
    if axis.by_epoch and length and ends and max(ends) / length <= _MAX_EPISODE_TICKS:
        figure.update_xaxes(tick0=0, dtick=length)


def _lane(env_id: int) -> str:
    return f"env {env_id}"


def _stage_bars(stage: str, segments: Sequence[Segment], axis: _Axis) -> Any:
    return go.Bar(
        orientation="h",
        name=stage.lower(),
        y=[_lane(s.env_id) for s in segments],
        base=[axis.x(s.start) for s in segments],
        x=[axis.x(s.end) - axis.x(s.start) for s in segments],
        width=0.6,
        marker={"color": STAGE_COLORS[stage], "line": {"width": 0}},
        customdata=[[_seed(s.seed_id, s.blueprint), axis.x(s.start)] for s in segments],
        hovertemplate=f"%{{customdata[0]}}<br>{stage}: {axis.length}<extra></extra>",
    )


def _outcome_markers(
    outcome: str, marker: dict[str, Any], ends: Sequence[SeedEnd], axis: _Axis
) -> Any:
    return go.Scatter(
        mode="markers",
        name=outcome,
        y=[_lane(end.env_id) for end in ends],
        x=[axis.x(end.at) for end in ends],
        marker={**marker, "line": {"width": 1, "color": "white"}},
        customdata=[[_seed(end.seed_id, end.blueprint), html.escape(end.note)] for end in ends],
        hovertemplate=f"%{{customdata[0]}}<br>{outcome}: %{{customdata[1]}}<extra></extra>",
    )


def _seed(seed_id: str, blueprint: str) -> str:
    return f"{html.escape(seed_id)} ({html.escape(blueprint)})"
