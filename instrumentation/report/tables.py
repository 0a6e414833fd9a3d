"""The report's tables, as HTML: the summary computed from the events, what `run.json`
says, the configuration, seeds by blueprint, anomalies by type and what could not be read.

Every value that comes from the log or from run.json is untrusted and goes through
`html.escape`, here and nowhere else: a log line's message or a seed id holding markup
must show as text, never run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any

from app.plurals import counted
from instrumentation.report.history import RunHistory, anomaly_label
from instrumentation.report.inputs import DRAWN_THRESHOLDS, RecordedRun, Thresholds

# A table row of HTML (escaped) cells: its heading, then its values.
Row = tuple[str, ...]
# In a table cell, the batch of an anomaly that happened in no known batch.
NO_BATCH = "—"
# How the threshold note names each of DRAWN_THRESHOLDS, and which way it fires.
_THRESHOLD_WORDS = {
    "ratio_explosion": "ratio explosion above",
    "ratio_collapse": "ratio collapse below",
    "value_collapse": "value collapse below",
}


def table(rows: Iterable[Row], header: tuple[str, ...] = (), css: str = "facts") -> str:
    """A table of already-escaped cells, each row's first cell its heading."""
    head = "".join(f"<th>{cell}</th>" for cell in header)
    body = "".join(
        f"<tr><th>{key}</th>{''.join(f'<td>{value}</td>' for value in values)}</tr>"
        for key, *values in rows
    )
    thead = f"<thead><tr>{head}</tr></thead>" if header else ""
    return f'<table class="{css}">{thead}<tbody>{body}</tbody></table>'


def summary_rows(history: RunHistory) -> Iterator[Row]:
    """What the events say about the run, computed from them."""
    readable = f"{history.events:,}"
    if history.unreadable:
        readable += f" ({counted(history.unreadable, 'unreadable line')} skipped)"
    yield "events", readable
    yield "time span", _span(history.first, history.last)
    ranks = sorted(rank for rank in history.ranks if rank is not None)
    yield "ranks read", ", ".join(map(str, ranks)) if ranks else "one process"
    series = history.batches
    if series.batches:
        yield "batches", f"{len(series.batches)} ({series.batches[0]} to {series.batches[-1]})"
        yield "final rolling accuracy", _number(series.last("rolling_avg_accuracy"), " %")
        yield "final batch accuracy", _number(series.last("avg_accuracy"), " %")
        yield "final reward", _number(series.last("avg_reward"), "")
    else:
        yield "batches", "none (no PPO_UPDATE_COMPLETED in this log)"
    seeds = history.seeds
    germinated, fossilized, culled = (
        sum(c.values()) for c in (seeds.germinated, seeds.fossilized, seeds.culled)
    )
    yield "seeds", f"{germinated} germinated, {fossilized} fossilized, {culled} culled"
    anomalies = sum(history.anomaly_counts.values())
    yield "anomalies", f"{anomalies:,}" if anomalies else "none"


def run_file_rows(record: RecordedRun) -> Iterator[Row]:
    """Every key of run.json but the configuration (which has a table of its own)."""
    if record.problem:
        yield "run.json", escape(f"unreadable: {record.problem}")
    for key, value in record.values.items():
        if key != "config":
            yield escape(str(key)), escape(_text(value))


def config_rows(config: Mapping[str, Any]) -> Iterator[Row]:
    """The configuration, one setting a row, nested sections as `section.field`."""
    for key, value in _flatten(config, ""):
        yield escape(key), escape(_text(value))


def _flatten(values: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value


def blueprint_rows(history: RunHistory) -> Iterator[Row]:
    """Seeds by blueprint: germinated, fossilized, culled."""
    seeds = history.seeds
    names = sorted(set(seeds.germinated) | set(seeds.fossilized) | set(seeds.culled))
    for name in names:
        counts = (seeds.germinated[name], seeds.fossilized[name], seeds.culled[name])
        yield escape(name), *(str(count) for count in counts)


def anomaly_rows(history: RunHistory) -> Iterator[Row]:
    """Anomalies by type: how many, in how many batches, the first batch (NO_BATCH when
    none is known) and the first one's detail."""
    for name, count in history.anomaly_counts.most_common():
        marks = [mark for mark in history.anomalies.values() if mark.event_type == name]
        batches = sorted(mark.batch for mark in marks if mark.batch is not None)
        first = min(marks, key=lambda mark: mark.position)
        first_batch = str(batches[0]) if batches else NO_BATCH
        cells = (str(count), str(len(batches)), first_batch, escape(first.detail))
        yield f"{escape(name)} <small>({anomaly_label(name)})</small>", *cells


def threshold_note(drawn: Thresholds) -> str:
    """The thresholds drawn, and where they come from: run.json, the defaults, or, when
    both, each one's source."""
    mixed = drawn.recorded and drawn.recorded != frozenset(DRAWN_THRESHOLDS)
    parts = []
    for name in DRAWN_THRESHOLDS:
        part = f"{_THRESHOLD_WORDS[name]} {getattr(drawn.limits, name):g}"
        if mixed:
            part += " (from run.json)" if name in drawn.recorded else " (the default)"
        parts.append(part)
    ending = "" if mixed else " (from run.json)" if drawn.recorded else " (the defaults)"
    return escape(f"Thresholds drawn: {', '.join(parts)}{ending}.")


def quality_rows(history: RunHistory) -> Iterator[Row]:
    """What was left out: unreadable lines (the first few, with their reason) and events a
    chart could not place, by chart and reason."""
    if history.unreadable:
        examples = "<br>".join(escape(example) for example in history.unreadable_examples)
        yield counted(history.unreadable, "unreadable line"), examples
    for reason, count in sorted(history.skipped.items()):
        yield escape(reason), f"{counted(count, 'event')} left out of the chart"


def _span(first: datetime | None, last: datetime | None) -> str:
    if first is None or last is None:
        return "no events"
    seconds = (last - first).total_seconds()
    start, end = (moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") for moment in (first, last))
    return f"{start} to {end} UTC ({_duration(seconds)})"


def _duration(seconds: float) -> str:
    minutes, second = divmod(round(seconds), 60)
    hours, minute = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minute:02d} min {second:02d} s"
    return f"{minute} min {second:02d} s" if minutes else f"{seconds:.1f} s"


def _number(value: float | None, unit: str) -> str:
    return "unknown" if value is None else f"{value:.4g}{unit}"


def _text(value: Any) -> str:
    """A run.json value as one line: strings as they are, numbers to 6 digits, a list or
    an object item by item, anything else (true, null) as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{key}={_text(item)}" for key, item in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_text(item) for item in value) + "]"
    return json.dumps(value, default=str)
