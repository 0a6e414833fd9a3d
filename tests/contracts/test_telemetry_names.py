"""The OpenTelemetry names the code uses (app/contracts/telemetry_names.py) are the names
docs/opentelemetry.md documents, so that a renamed span, attribute or metric cannot reach
users without the contract changing with it."""

from __future__ import annotations

import re

from helpers import DOCS, METRICS

from app.contracts import telemetry_names as names

DOCUMENT = (DOCS / "opentelemetry.md").read_text(encoding="utf-8")

SPANS = {names.RUN_SPAN, names.BATCH_SPAN, names.EPISODE_SPAN, names.EPOCH_SPAN, names.UPDATE_SPAN}
COUNTERS = {names.EPISODES, names.EVENTS, names.ANOMALIES, names.SINK_ERRORS}
HISTOGRAMS = {names.BATCH_DURATION, names.EPOCH_DURATION, names.UPDATE_DURATION}
GAUGES = {
    *(names.ppo_gauge(statistic) for statistic in names.PPO_STATISTICS),
    names.TRAINING_ACCURACY,
    names.TRAINING_REWARD,
    names.SEEDS,
}
LABELS = {
    names.WINDOW_LABEL,
    names.EVENT_TYPE_LABEL,
    names.SEVERITY_LABEL,
    names.ANOMALY_TYPE_LABEL,
    names.STAGE_LABEL,
    names.SINK_LABEL,
}


def prometheus_name(instrument: str) -> str:
    """The exporters' rule: dots to underscores, `_seconds` for unit s, `_total` for counters."""
    name = instrument.replace(".", "_")
    if instrument in HISTOGRAMS:
        return f"{name}_seconds"
    return f"{name}_total" if instrument in COUNTERS else name


def test_every_instrument_is_documented_under_its_prometheus_name_and_kind() -> None:
    expected = {
        **{prometheus_name(name): "counter" for name in COUNTERS},
        **{prometheus_name(name): "histogram" for name in HISTOGRAMS},
        **{prometheus_name(name): "gauge" for name in GAUGES},
    }
    assert {name: metric.kind for name, metric in METRICS.items()} == expected


def test_metric_labels_are_the_named_labels() -> None:
    documented = set().union(*(metric.labels for metric in METRICS.values()))
    assert documented == LABELS
    assert f"`{names.RUN_ID_LABEL}`" in DOCUMENT
    assert f"`{names.RANK_LABEL}`" in DOCUMENT


def test_the_documented_spans_are_the_named_spans() -> None:
    table = DOCUMENT.split("| span | attributes |", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"^\| `([\w.]+)`", table, flags=re.MULTILINE)) == SPANS


def test_every_name_is_documented() -> None:
    constants = {
        key: value
        for key, value in vars(names).items()
        if key.isupper() and isinstance(value, str) and value.startswith("esper.")
    }
    # Instruments are documented by their Prometheus names (the tests above).
    instruments = COUNTERS | HISTOGRAMS | GAUGES
    constants = {key: value for key, value in constants.items() if value not in instruments}
    undocumented = sorted(key for key, value in constants.items() if value not in DOCUMENT)
    assert not undocumented, f"not in docs/opentelemetry.md: {undocumented}"
