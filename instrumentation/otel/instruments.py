"""`EsperInstruments`: the instruments of docs/opentelemetry.md on a meter, and the
callbacks through which the observable ones report a `MetricState` (metrics.py says why
they are observable).

Every dimensionless instrument has an empty unit: the OpenTelemetry-to-Prometheus rules
would turn a unit "1" into a `_ratio` suffix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

from app.contracts import telemetry_names as names
from instrumentation.otel.metric_state import MetricState

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

# Sink label -> failures and lost exports, e.g. {"otlp_traces": 3}; see sink_errors.py.
SinkErrorSource = Callable[[], Mapping[str, int]]
Callback = Callable[[CallbackOptions], Iterable[Observation]]


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
        rank: int = 0,
    ) -> None:
        # Every rank of a run reports its own series: the rank label keeps them apart.
        self._run = {names.RUN_ID_LABEL: run_id, names.RANK_LABEL: str(rank)}
        self._state = state
        self._sink_errors = sink_errors
        for create, name, callback, description in self._observed(meter):
            create(name, callbacks=[callback], unit="", description=description)
        self.batch_duration = self._seconds(meter, names.BATCH_DURATION, "One PPO batch")
        self.epoch_duration = self._seconds(
            meter, names.EPOCH_DURATION, "One host epoch: train and validate"
        )
        self.update_duration = self._seconds(meter, names.UPDATE_DURATION, "One PPO update")

    @property
    def run_attributes(self) -> Mapping[str, str]:
        return self._run

    def _observed(self, meter: Meter) -> list[tuple[Callable[..., object], str, Callback, str]]:
        """(creator, name, callback, description) of each observable instrument."""
        gauge, counter = meter.create_observable_gauge, meter.create_observable_counter
        return [
            *(
                (
                    gauge,
                    name,
                    self._ppo_callback(key),
                    f"PPO {key.replace('_', ' ')} of the latest update",
                )
                for key, name in PPO_GAUGES.items()
            ),
            (
                gauge,
                names.TRAINING_ACCURACY,
                self._accuracy,
                "Validation accuracy in percent: last batch mean, rolling mean",
            ),
            (gauge, names.TRAINING_REWARD, self._reward, "Mean episode return of the last batch"),
            (counter, names.EPISODES, self._episodes, "Episodes completed"),
            (counter, names.EVENTS, self._events, "Domain events emitted, by type and severity"),
            (counter, names.ANOMALIES, self._anomalies, "PPO anomalies detected, by type"),
            (
                gauge,
                names.SEEDS,
                self._seeds,
                "Seeds in each lifecycle stage, over all environments",
            ),
            (
                counter,
                names.SINK_ERRORS,
                self._sink_error_counts,
                "Telemetry sink failures and dropped exports, by sink",
            ),
        ]

    @staticmethod
    def _seconds(meter: Meter, name: str, what: str) -> Histogram:
        return meter.create_histogram(
            name,
            unit="s",
            description=f"{what}, in seconds",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )

    def _ppo_callback(self, key: str) -> Callback:
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
        return self._labelled(
            names.ANOMALY_TYPE_LABEL, sorted(self._state.snapshot().anomalies.items())
        )

    def _seeds(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._labelled(names.STAGE_LABEL, self._state.snapshot().seeds.items())

    def _sink_error_counts(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._labelled(names.SINK_LABEL, sorted(self._sink_errors().items()))

    def _labelled(self, label: str, counts: Iterable[tuple[str, int]]) -> list[Observation]:
        """One observation per count, the run's attributes and `label` set to its key."""
        return [Observation(count, {**self._run, label: key}) for key, count in counts]
