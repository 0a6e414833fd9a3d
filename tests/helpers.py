"""Helpers shared by tests in several directories, imported as `from helpers import ...`
(tests/ is on sys.path: pytest puts it there when it imports tests/conftest.py)."""

from __future__ import annotations

from app.contracts.events import EventType, TelemetryEvent

# The PPO statistics an update reports: PPO_UPDATE_COMPLETED fields and esper_ppo_* gauges.
PPO_STATISTICS = (
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

# DESIGN §5's metric table: Prometheus name -> its labels besides run_id.
PPO_GAUGES = tuple(f"esper_ppo_{name}" for name in PPO_STATISTICS)
HISTOGRAMS = (
    "esper_batch_duration_seconds",
    "esper_epoch_duration_seconds",
    "esper_ppo_update_duration_seconds",
)
METRIC_TABLE: dict[str, frozenset[str]] = {
    **{name: frozenset() for name in PPO_GAUGES},
    "esper_training_accuracy": frozenset({"window"}),
    "esper_training_reward": frozenset(),
    "esper_episodes_total": frozenset(),
    "esper_events_total": frozenset({"event_type", "severity"}),
    "esper_anomalies_total": frozenset({"anomaly_type"}),
    "esper_seeds": frozenset({"stage"}),
    **{name: frozenset() for name in HISTOGRAMS},
    "esper_telemetry_sink_errors_total": frozenset({"sink"}),
}

# The data fields of every PPO_UPDATE_COMPLETED event (DESIGN §4).
PPO_FIELDS = (
    "batch",
    "episodes_completed",
    "train_steps",
    *PPO_STATISTICS,
    "early_stop_epoch",
    "avg_accuracy",
    "avg_reward",
    "rolling_avg_accuracy",
)
# The data fields every anomaly warning event carries, whatever its type.
ANOMALY_FIELDS = (
    "anomaly_type",
    "detail",
    "ratio_max",
    "ratio_min",
    "explained_variance",
    "train_steps",
    "approx_kl",
    "clip_fraction",
    "entropy",
)
# DESIGN §4: the data of PLATEAU/IMPROVEMENT/DEGRADATION_DETECTED.
PROGRESS_FIELDS = (
    "batch",
    "smoothed_delta",
    "recent_avg",
    "older_avg",
    "rolling_avg_accuracy",
    "episodes_completed",
)
# DESIGN §4: the data of SEED_FOSSILIZED and SEED_CULLED (plus params_added or reason).
SEED_OUTCOME_FIELDS = (
    "blueprint_id",
    "seed_id",
    "env_id",
    "improvement",
    "blending_delta",
    "counterfactual",
    "epochs_in_stage",
    "epochs_total",
)


class EventRecorder(list[TelemetryEvent]):
    """An `app.telemetry` event handler that keeps every event it is handed, in order.

    It is the list of those events itself, so tests compare, index and unpack it directly.
    """

    def emit(self, event: TelemetryEvent) -> None:
        self.append(event)

    def of_type(self, event_type: EventType) -> list[TelemetryEvent]:
        """The recorded events of `event_type`, in order."""
        return [event for event in self if event.event_type == event_type]
