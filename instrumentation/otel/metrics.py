"""Esper's metrics (docs/opentelemetry.md, a contract for names and labels), fed by domain events.

Cost on the training thread is what matters (one synchronous `Gauge.set` costs
~20 µs, so an event that set a dozen gauges would cost ~0.4 ms). So the event path only
writes plain Python values into `MetricState` under a lock (well under a microsecond per
field), and every gauge and counter is an *observable* instrument whose callback reads
that state when a reader collects: on the periodic exporter's thread or on the Prometheus
HTTP thread, never on the training thread. Only the three duration histograms are
synchronous, recorded once per epoch, batch or update.

Prometheus names follow from the OpenTelemetry-to-Prometheus rules (dots become
underscores, counters gain `_total`, unit "s" becomes `_seconds`), the same in the
Python Prometheus reader and in the collector's exporter, so every dimensionless
instrument has an empty unit: a unit "1" would become a `_ratio` suffix.

Durations: epochs from EPOCH_COMPLETED's `duration_s` (host train and validate);
batches and PPO updates from the spans `esper.batch` and `esper.ppo.update`, measured
by `SpanMetricsProcessor` when they end. That keeps `app/` on the OpenTelemetry API: no
event carries these durations, and the spans already time exactly that work.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from app.contracts import telemetry_names as names
from app.contracts.events import EventType, TelemetryEvent
from app.contracts.stages import SeedStage

METER_NAME = "esper"

# Bucket upper bounds in seconds for the duration histograms: an epoch of a small host
# takes tens of milliseconds, a batch of a default run minutes; 5 ms to 1 h spans both
# with two or three buckets per decade.
SECONDS_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)

# PPO_UPDATE_COMPLETED data key -> gauge instrument name.
PPO_GAUGES: Mapping[str, str] = {key: names.ppo_gauge(key) for key in names.PPO_STATISTICS}

# Anomaly types the detector knows (app/rl/anomaly.py); reported at zero from the start
# so that dashboards and alerts see a series before the first anomaly.
KNOWN_ANOMALY_TYPES = (
    "ratio_explosion",
    "ratio_collapse",
    "value_collapse",
    "numerical_instability",
    "gradient_pathology",
)

# Every stage a live seed can be in; DORMANT means the slot holds no seed.
SEED_STAGES = tuple(stage.name for stage in SeedStage if stage is not SeedStage.DORMANT)
_DORMANT = SeedStage.DORMANT.name

# Export failures by sink label, e.g. {"otlp_traces": 3}; see setup.py.
SinkErrorSource = Callable[[], Mapping[str, int]]


def _number(value: object) -> float | None:
    """value as a float if it is a real number (bool excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


@dataclass(frozen=True)
class _Snapshot:
    ppo: dict[str, float]
    accuracy: dict[str, float]
    reward: float | None
    episodes: int
    events: dict[tuple[str, str], int]
    anomalies: dict[str, int]
    seeds: dict[str, int]


class MetricState:
    """The latest values and running counts that the observable instruments report.

    Written from domain events on the training thread, read by metric callbacks on
    exporter threads; one lock keeps a reader from seeing a half-applied event.

    Seed counts keep each (env_id, slot_id)'s current stage: lifecycle events move it,
    and EPOCH_COMPLETED (which carries `seed_stage`) re-synchronises it every epoch,
    which also clears the seeds of an environment whose host was reset for a new
    episode (a reset emits no event). At MINIMAL level neither SEED_STAGE_CHANGED nor
    EPOCH_COMPLETED is emitted, so a seed then stays in the stage of its last outcome.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ppo: dict[str, float] = {}
        self._accuracy: dict[str, float] = {}
        self._reward: float | None = None
        self._episodes_reported = 0
        self._episodes_counted = 0
        self._events: Counter[tuple[str, str]] = Counter()
        self._anomalies: Counter[str] = Counter(dict.fromkeys(KNOWN_ANOMALY_TYPES, 0))
        self._seed_stages: dict[tuple[object, object], str] = {}

    def observe(self, event: TelemetryEvent) -> None:
        """Apply one domain event."""
        data = event.data
        with self._lock:
            self._events[(event.event_type.value, event.severity.value)] += 1
            anomaly_type = data.get("anomaly_type")
            if isinstance(anomaly_type, str):
                self._anomalies[anomaly_type] += 1
            episodes = data.get("episodes_completed")
            if isinstance(episodes, int) and not isinstance(episodes, bool):
                self._episodes_reported = max(self._episodes_reported, episodes)
            if event.event_type is EventType.PPO_UPDATE_COMPLETED:
                self._observe_update(data)
            else:
                self._observe_seed(event)

    def count_episode(self) -> None:
        """One episode ended (its `esper.episode` span), whatever the controller."""
        with self._lock:
            self._episodes_counted += 1

    def set_batch_accuracy(self, accuracy: float) -> None:
        with self._lock:
            self._accuracy["batch"] = accuracy

    def snapshot(self) -> _Snapshot:
        with self._lock:
            seeds = Counter(self._seed_stages.values())
            return _Snapshot(
                ppo=dict(self._ppo),
                accuracy=dict(self._accuracy),
                reward=self._reward,
                # The run's own count (which includes episodes before a resume) when PPO
                # or progress events report it; ended episode spans for the heuristic.
                episodes=max(self._episodes_reported, self._episodes_counted),
                events=dict(self._events),
                anomalies=dict(self._anomalies),
                seeds={stage: seeds.get(stage, 0) for stage in SEED_STAGES},
            )

    def _observe_update(self, data: Mapping[str, object]) -> None:
        for key in PPO_GAUGES:
            value = _number(data.get(key))
            if value is not None:
                self._ppo[key] = value
        for window, key in (("batch", "avg_accuracy"), ("rolling", "rolling_avg_accuracy")):
            value = _number(data.get(key))
            if value is not None:
                self._accuracy[window] = value
        reward = _number(data.get("avg_reward"))
        if reward is not None:
            self._reward = reward

    def _observe_seed(self, event: TelemetryEvent) -> None:
        data, kind = event.data, event.event_type
        stage: object
        if kind is EventType.SEED_GERMINATED:
            stage = SeedStage.GERMINATED.name
        elif kind is EventType.SEED_STAGE_CHANGED:
            stage = data.get("to")
        elif kind is EventType.SEED_FOSSILIZED:
            stage = SeedStage.FOSSILIZED.name
        elif kind is EventType.SEED_CULLED:
            stage = SeedStage.CULLED.name
        elif kind is EventType.EPOCH_COMPLETED:
            stage = data.get("seed_stage")
        else:
            return
        if not isinstance(stage, str):
            return
        key = (data.get("env_id"), event.slot_id)
        if stage == _DORMANT:
            self._seed_stages.pop(key, None)
        else:
            self._seed_stages[key] = stage


class EsperInstruments:
    """Creates the instruments of docs/opentelemetry.md on a meter; observable ones read
    a MetricState.

    `sink_errors` is read at collection time: the hub's failure counts by sink (every
    sink of the hub is reported, at zero until it fails) merged with export failures.
    """

    def __init__(
        self,
        meter: Meter,
        run_id: str,
        state: MetricState,
        sink_errors: SinkErrorSource,
    ) -> None:
        self._run = {names.RUN_ID_LABEL: run_id}
        self._state = state
        self._sink_errors = sink_errors
        for key, name in PPO_GAUGES.items():
            meter.create_observable_gauge(
                name,
                callbacks=[self._ppo_callback(key)],
                unit="",
                description=f"PPO {key.replace('_', ' ')} of the latest update",
            )
        meter.create_observable_gauge(
            names.TRAINING_ACCURACY,
            callbacks=[self._accuracy],
            unit="",
            description="Validation accuracy in percent: last batch mean, rolling mean",
        )
        meter.create_observable_gauge(
            names.TRAINING_REWARD,
            callbacks=[self._reward],
            unit="",
            description="Mean episode return of the last batch",
        )
        meter.create_observable_counter(
            names.EPISODES,
            callbacks=[self._episodes],
            unit="",
            description="Episodes completed",
        )
        meter.create_observable_counter(
            names.EVENTS,
            callbacks=[self._events],
            unit="",
            description="Domain events emitted, by type and severity",
        )
        meter.create_observable_counter(
            names.ANOMALIES,
            callbacks=[self._anomalies],
            unit="",
            description="PPO anomalies detected, by type",
        )
        meter.create_observable_gauge(
            names.SEEDS,
            callbacks=[self._seeds],
            unit="",
            description="Seeds in each lifecycle stage, over all environments",
        )
        meter.create_observable_counter(
            names.SINK_ERRORS,
            callbacks=[self._sink_error_counts],
            unit="",
            description="Telemetry sink failures and dropped exports, by sink",
        )
        self.batch_duration = self._seconds(meter, names.BATCH_DURATION, "One PPO batch")
        self.epoch_duration = self._seconds(
            meter, names.EPOCH_DURATION, "One host epoch: train and validate"
        )
        self.update_duration = self._seconds(meter, names.UPDATE_DURATION, "One PPO update")

    @property
    def run_attributes(self) -> Mapping[str, str]:
        return self._run

    @staticmethod
    def _seconds(meter: Meter, name: str, what: str) -> Histogram:
        return meter.create_histogram(
            name,
            unit="s",
            description=f"{what}, in seconds",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )

    def _ppo_callback(self, key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            value = self._state.snapshot().ppo.get(key)
            return [] if value is None else [Observation(value, self._run)]

        return observe

    def _accuracy(self, options: CallbackOptions) -> Iterable[Observation]:
        accuracy = self._state.snapshot().accuracy
        return [
            Observation(value, {**self._run, names.WINDOW_LABEL: window})
            for window, value in sorted(accuracy.items())
        ]

    def _reward(self, options: CallbackOptions) -> Iterable[Observation]:
        reward = self._state.snapshot().reward
        return [] if reward is None else [Observation(reward, self._run)]

    def _episodes(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._state.snapshot().episodes, self._run)]

    def _events(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(
                count,
                {**self._run, names.EVENT_TYPE_LABEL: event_type, names.SEVERITY_LABEL: severity},
            )
            for (event_type, severity), count in sorted(self._state.snapshot().events.items())
        ]

    def _anomalies(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(count, {**self._run, names.ANOMALY_TYPE_LABEL: anomaly_type})
            for anomaly_type, count in sorted(self._state.snapshot().anomalies.items())
        ]

    def _seeds(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(count, {**self._run, names.STAGE_LABEL: stage})
            for stage, count in self._state.snapshot().seeds.items()
        ]

    def _sink_error_counts(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(count, {**self._run, names.SINK_LABEL: sink})
            for sink, count in sorted(self._sink_errors().items())
        ]


class EsperMetrics:
    """The metric side of the OTel adapter: events in, instruments updated."""

    def __init__(self, instruments: EsperInstruments, state: MetricState) -> None:
        self.instruments = instruments
        self.state = state

    def observe(self, event: TelemetryEvent) -> None:
        self.state.observe(event)
        if event.event_type is EventType.EPOCH_COMPLETED:
            duration = _number(event.data.get("duration_s"))
            if duration is not None and math.isfinite(duration) and duration >= 0:
                self.instruments.epoch_duration.record(duration, self.instruments.run_attributes)


class SpanMetricsProcessor(SpanProcessor):
    """Turns ended training spans into metrics: batch and update durations, episodes.

    Runs in `span.end()` on the training thread: one histogram record per batch or
    update, a counter bump per episode. It sees every span, sampled or not: the
    session's sampler records the spans it does not sample (sampling.py).
    """

    def __init__(self, metrics: EsperMetrics) -> None:
        self._metrics = metrics

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if span.attributes is not None and span.attributes.get(names.REPLAY_PART, 1) != 1:
            return  # a replayed span's later part: the span is counted once, at its first
        name = span.name
        if name == names.EPISODE_SPAN:
            self._metrics.state.count_episode()
            return
        if name not in (names.BATCH_SPAN, names.UPDATE_SPAN) or span.start_time is None:
            return
        if span.end_time is None:
            return
        seconds = (span.end_time - span.start_time) / 1e9
        instruments = self._metrics.instruments
        histogram = (
            instruments.batch_duration if name == names.BATCH_SPAN else instruments.update_duration
        )
        histogram.record(seconds, instruments.run_attributes)
        if name == names.BATCH_SPAN and span.attributes is not None:
            accuracy = _number(span.attributes.get(names.AVG_ACCURACY))
            if accuracy is not None:
                self._metrics.state.set_batch_accuracy(accuracy)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
