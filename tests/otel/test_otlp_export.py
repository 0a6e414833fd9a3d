"""A real training run exported by the SDK's OTLP exporters (gRPC and HTTP) to an
in-process receiver: the span tree, span events, metrics, resource and JSONL ids."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from helpers import HISTOGRAMS, METRIC_TABLE
from otel_runs import ExportedRun
from receivers import attributes_of

from app.contracts import telemetry_names as names
from app.contracts.events import EventType, TelemetryEvent

ANOMALY_EVENTS = {
    EventType.RATIO_EXPLOSION_DETECTED,
    EventType.RATIO_COLLAPSE_DETECTED,
    EventType.VALUE_COLLAPSE_DETECTED,
    EventType.GRADIENT_PATHOLOGY_DETECTED,
    EventType.NUMERICAL_INSTABILITY_DETECTED,
}
# Where docs/opentelemetry.md says each event lands: the name of the span holding it.
EPOCH_EVENTS = {
    EventType.SEED_GERMINATED,
    EventType.SEED_STAGE_CHANGED,
    EventType.SEED_FOSSILIZED,
    EventType.SEED_CULLED,
    EventType.EPOCH_COMPLETED,
    EventType.TAMIYO_INITIATED,
}
BATCH_EVENTS = {
    EventType.PLATEAU_DETECTED,
    EventType.IMPROVEMENT_DETECTED,
    EventType.DEGRADATION_DETECTED,
}
UPDATE_EVENTS = {EventType.PPO_UPDATE_COMPLETED, *ANOMALY_EVENTS}

# The table's series as scraped: histograms through their buckets.
PROMETHEUS_SERIES: dict[str, set[str]] = {
    **{name: set(labels) for name, labels in METRIC_TABLE.items() if name not in HISTOGRAMS},
    **{f"{name}_bucket": {"le"} for name in HISTOGRAMS},
}


def hex_id(raw: bytes) -> str:
    return raw.hex()


def spans_by_id(run: ExportedRun) -> dict[bytes, Any]:
    return {span.span_id: span for span in run.received.spans()}


def expected_attributes(event: TelemetryEvent) -> dict[str, Any]:
    """The span-event attributes of docs/opentelemetry.md, computed independently of the adapter."""
    expected: dict[str, Any] = {
        names.EVENT_TYPE: event.event_type.value,
        names.EVENT_ID: event.event_id,
        names.EVENT_SEVERITY: event.severity.value,
    }
    for key, value in (
        (names.SEED_ID, event.seed_id),
        (names.SLOT_ID, event.slot_id),
        (names.EPOCH, event.epoch),
        (names.MESSAGE, event.message or None),
    ):
        if value is not None:
            expected[key] = value

    def add(prefix: str, data: Mapping[str, Any]) -> None:
        for key, value in data.items():
            if isinstance(value, Mapping):
                add(f"{prefix}{key}.", value)
            elif value is not None:
                expected[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value

    add(names.DATA_PREFIX, event.data)
    return expected


def same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left):
        return math.isnan(right)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(same, left, right))
    return bool(left == right)


def test_span_tree_one_trace_per_batch_linked_to_the_run(exported_run: ExportedRun) -> None:
    spans = exported_run.received.spans()
    by_id = spans_by_id(exported_run)
    spans_named = Counter(span.name for span in spans)
    config_batches = 2
    assert spans_named[names.RUN_SPAN] == 1
    assert spans_named[names.BATCH_SPAN] == config_batches
    assert spans_named[names.EPISODE_SPAN] == 4
    assert spans_named[names.EPOCH_SPAN] == 4 * 8
    assert spans_named[names.UPDATE_SPAN] == config_batches

    (run_span,) = [span for span in spans if span.name == names.RUN_SPAN]
    batches = [span for span in spans if span.name == names.BATCH_SPAN]
    assert len({batch.trace_id for batch in batches} | {run_span.trace_id}) == 3
    for batch in batches:
        assert batch.parent_span_id == b""
        assert attributes_of(batch.attributes)[names.RUN_ID] == exported_run.run_id
        assert [(link.trace_id, link.span_id) for link in batch.links] == [
            (run_span.trace_id, run_span.span_id)
        ]
    for span in spans:
        if span.name in (names.EPISODE_SPAN, names.UPDATE_SPAN):
            assert by_id[span.parent_span_id].name == names.BATCH_SPAN
            assert span.trace_id == by_id[span.parent_span_id].trace_id
        if span.name == names.EPOCH_SPAN:
            episode = by_id[span.parent_span_id]
            assert episode.name == names.EPISODE_SPAN
            env_id = attributes_of(span.attributes)[names.ENV_ID]
            assert attributes_of(episode.attributes)[names.ENV_ID] == env_id
    envs = {
        attributes_of(span.attributes)[names.ENV_ID]
        for span in spans
        if span.name == names.EPISODE_SPAN
    }
    assert envs == {0, 1}


def test_every_event_arrives_as_a_span_event_with_its_data(exported_run: ExportedRun) -> None:
    exported: dict[str, tuple[Any, Any]] = {}
    for span in exported_run.received.spans():
        for span_event in span.events:
            attributes = attributes_of(span_event.attributes)
            exported[attributes[names.EVENT_ID]] = (span, span_event)
            assert span_event.dropped_attributes_count == 0
        assert span.dropped_events_count == 0
    assert {event.event_type for event in exported_run.events} >= {
        EventType.EPOCH_COMPLETED,
        EventType.SEED_GERMINATED,
        EventType.SEED_STAGE_CHANGED,
        EventType.TAMIYO_INITIATED,
        EventType.PPO_UPDATE_COMPLETED,
    }
    for event in exported_run.events:
        span, span_event = exported[event.event_id]
        assert span_event.name == f"esper.{event.event_type.value.lower()}"
        attributes = attributes_of(span_event.attributes)
        expected = expected_attributes(event)
        assert attributes.keys() == expected.keys(), event.event_type
        for key, value in expected.items():
            assert same(value, attributes[key]), (event.event_type, key, value, attributes[key])
        assert abs(span_event.time_unix_nano / 1e9 - event.timestamp.timestamp()) < 1e-5


def test_events_land_on_the_innermost_span(exported_run: ExportedRun) -> None:
    holder = {
        attributes_of(span_event.attributes)[names.EVENT_ID]: span.name
        for span in exported_run.received.spans()
        for span_event in span.events
    }
    for event in exported_run.events:
        if event.event_type in EPOCH_EVENTS:
            assert holder[event.event_id] == names.EPOCH_SPAN, event.event_type
        elif event.event_type in BATCH_EVENTS:
            assert holder[event.event_id] == names.BATCH_SPAN, event.event_type
        elif event.event_type in UPDATE_EVENTS:
            assert holder[event.event_id] == names.UPDATE_SPAN, event.event_type


def test_debug_gradient_statistics_fit_the_event_attribute_limit(
    exported_run: ExportedRun,
) -> None:
    updates = [
        event
        for event in exported_run.events
        if event.event_type == EventType.PPO_UPDATE_COMPLETED and "layer_grad_stats" in event.data
    ]
    assert updates, "the run is at DEBUG level: PPO updates carry layer_grad_stats"
    largest = max(len(expected_attributes(event)) for event in updates)
    assert largest > 60  # the case the raised limit is for; all arrived (test above)


def test_resource_attributes(exported_run: ExportedRun) -> None:
    resources = exported_run.received.resources()
    assert resources
    for resource in resources:
        attributes = attributes_of(resource.attributes)
        assert attributes["service.name"] == "esper-training"
        assert attributes["service.version"]
        assert attributes["service.instance.id"] == exported_run.run_id
        assert attributes[names.RUN_ID] == exported_run.run_id
        assert attributes["deployment.environment"] == "test"


def test_jsonl_trace_and_span_ids_match_the_exported_spans(exported_run: ExportedRun) -> None:
    holder = {
        attributes_of(span_event.attributes)[names.EVENT_ID]: span
        for span in exported_run.received.spans()
        for span_event in span.events
    }
    assert len(exported_run.jsonl_lines) == len(exported_run.events)
    for line in exported_run.jsonl_lines:
        span = holder[line["event_id"]]
        assert line["trace_id"] == hex_id(span.trace_id)
        assert line["span_id"] == hex_id(span.span_id)
        assert re.fullmatch("[0-9a-f]{32}", line["trace_id"])


def _otlp_points(run: ExportedRun) -> dict[str, list[dict[str, Any]]]:
    """The last export of each metric: its data points' attributes and values."""
    points: dict[str, list[dict[str, Any]]] = {}
    for name, metrics in run.received.metrics().items():
        metric = metrics[-1]
        data = getattr(metric, metric.WhichOneof("data"))
        points[name] = [
            {**attributes_of(point.attributes), "_point": point} for point in data.data_points
        ]
    return points


def test_otlp_metrics_have_the_design_instruments_and_labels(exported_run: ExportedRun) -> None:
    points = _otlp_points(exported_run)
    run_id = exported_run.run_id
    expected_labels = {
        **{names.ppo_gauge(statistic): set() for statistic in names.PPO_STATISTICS},
        names.TRAINING_ACCURACY: {"window"},
        names.TRAINING_REWARD: set(),
        names.EPISODES: set(),
        names.EVENTS: {"event_type", "severity"},
        names.ANOMALIES: {"anomaly_type"},
        names.SEEDS: {"stage"},
        names.BATCH_DURATION: set(),
        names.EPOCH_DURATION: set(),
        names.UPDATE_DURATION: set(),
        names.SINK_ERRORS: {"sink"},
    }
    for name, labels in expected_labels.items():
        assert points.get(name), f"{name} was not exported"
        for point in points[name]:
            assert (point["run_id"], point["rank"]) == (run_id, "0")
            assert set(point) - {"_point", "run_id", "rank"} == labels, name
    windows = {point["window"] for point in points[names.TRAINING_ACCURACY]}
    assert windows == {"batch", "rolling"}
    (episodes,) = points[names.EPISODES]
    assert episodes["_point"].as_int == 4
    counted = Counter(
        (event.event_type.value, event.severity.value) for event in exported_run.events
    )
    exported = {
        (point["event_type"], point["severity"]): point["_point"].as_int
        for point in points[names.EVENTS]
    }
    assert exported == dict(counted)
    sinks = {point["sink"]: point["_point"].as_int for point in points[names.SINK_ERRORS]}
    # Every hub sink and every exporter from zero, and what span and log limits dropped.
    assert sinks == {
        "jsonl": 0,
        "recorder": 0,
        "otel": 0,
        "otlp_traces": 0,
        "otlp_metrics": 0,
        "otlp_logs": 0,
        "span_limits": 0,
        "log_limits": 0,
    }
    epochs = points[names.EPOCH_DURATION][0]["_point"]
    assert epochs.count == 4 * 8
    assert list(epochs.explicit_bounds)[:3] == [0.005, 0.01, 0.025]


def test_prometheus_scrape_has_every_series_of_the_design_table(
    exported_run: ExportedRun,
) -> None:
    series: dict[str, list[set[str]]] = {}
    for line in exported_run.prometheus_text.splitlines():
        if line.startswith("#") or not line:
            continue
        match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ", line)
        assert match, line
        labels = {pair.split("=", 1)[0] for pair in re.findall(r'\w+="[^"]*"', match[2] or "")}
        series.setdefault(match[1], []).append(labels)
    for name, labels in PROMETHEUS_SERIES.items():
        assert name in series, f"{name} missing from the scrape"
        for found in series[name]:
            assert found == labels | {"run_id", "rank"}, (name, found)
    assert f'run_id="{exported_run.run_id}"' in exported_run.prometheus_text
    assert not [name for name in series if name.endswith("_ratio")]


def test_shutdown_flushes_quickly_with_a_live_receiver(exported_run: ExportedRun) -> None:
    assert exported_run.shutdown_finished
    assert exported_run.shutdown_s < 2.0
