"""The OpenTelemetry names that dashboards, Jaeger searches and users' alerts depend on.

Every span name, attribute key, metric instrument name and metric label of
docs/opentelemetry.md is spelled here once; the training code, the instrumentation and
the tests import them from here. Changing one changes the contract.
"""

from __future__ import annotations

from typing import Final

from app.contracts.events import EventType

# --- Spans: one trace per PPO batch ---------------------------------------------------------
RUN_SPAN: Final = "esper.run"
BATCH_SPAN: Final = "esper.batch"
EPISODE_SPAN: Final = "esper.episode"
EPOCH_SPAN: Final = "esper.epoch"
UPDATE_SPAN: Final = "esper.ppo.update"

# --- Span and resource attributes -----------------------------------------------------------
RUN_ID: Final = "esper.run_id"
# The rank of the process, on the resource of a run of several processes.
RANK: Final = "esper.rank"
BATCH: Final = "esper.batch"
EPISODES_COMPLETED: Final = "esper.episodes_completed"
AVG_ACCURACY: Final = "esper.avg_accuracy"
ENV_ID: Final = "esper.env_id"
EPOCH: Final = "esper.epoch"
FINAL_ACCURACY: Final = "esper.final_accuracy"
SEED_STAGE: Final = "esper.seed_stage"
# The run's configuration on `esper.run`: `esper.config.<field>`, `esper.config.<section>.<field>`.
CONFIG_PREFIX: Final = "esper.config."

# Set by `esper replay` on the spans it rebuilds from a log.
REPLAYED: Final = "esper.replayed"
REPLAY_PART: Final = "esper.replay.part"
REPLAY_PARTS: Final = "esper.replay.parts"
ORIGINAL_TRACE_ID: Final = "esper.original_trace_id"
ORIGINAL_SPAN_ID: Final = "esper.original_span_id"

# --- Span events: one per domain event ------------------------------------------------------
EVENT_TYPE: Final = "esper.event.type"
EVENT_ID: Final = "esper.event.id"
EVENT_SEVERITY: Final = "esper.event.severity"
SEED_ID: Final = "esper.seed_id"
SLOT_ID: Final = "esper.slot_id"
MESSAGE: Final = "esper.message"
# `esper.epoch` (EPOCH above) too; each data key becomes `esper.data.<key>`.
DATA_PREFIX: Final = "esper.data."


def span_event_name(event_type: EventType) -> str:
    """`esper.<event type in lower case>`, e.g. `esper.ratio_explosion_detected`."""
    return f"esper.{event_type.value.lower()}"


# --- Metrics: instrument names (Prometheus: dots become underscores, counters gain _total,
# unit "s" gains _seconds) ---------------------------------------------------------------------
# The statistics of a PPO update that are gauges (`esper.ppo.<statistic>`) and fields of
# PPO_UPDATE_COMPLETED.
PPO_STATISTICS: Final = (
    "policy_loss",
    "value_loss",
    "entropy",
    "entropy_coef",
    "approx_kl",
    "clip_fraction",
    "ratio_max",
    "ratio_min",
    "ratio_std",
    "explained_variance",
)


def ppo_gauge(statistic: str) -> str:
    return f"esper.ppo.{statistic}"


TRAINING_ACCURACY: Final = "esper.training.accuracy"
TRAINING_REWARD: Final = "esper.training.reward"
EPISODES: Final = "esper.episodes"
EVENTS: Final = "esper.events"
ANOMALIES: Final = "esper.anomalies"
SEEDS: Final = "esper.seeds"
SINK_ERRORS: Final = "esper.telemetry.sink_errors"
BATCH_DURATION: Final = "esper.batch.duration"
EPOCH_DURATION: Final = "esper.epoch.duration"
UPDATE_DURATION: Final = "esper.ppo.update.duration"

# --- Metrics: labels --------------------------------------------------------------------------
RUN_ID_LABEL: Final = "run_id"
RANK_LABEL: Final = "rank"
WINDOW_LABEL: Final = "window"
EVENT_TYPE_LABEL: Final = "event_type"
SEVERITY_LABEL: Final = "severity"
ANOMALY_TYPE_LABEL: Final = "anomaly_type"
STAGE_LABEL: Final = "stage"
SINK_LABEL: Final = "sink"
