"""`MetricState`: the latest values and running counts that Esper's observable
instruments report (instruments.py), written from domain events on the training thread
under a lock, well under a microsecond per field (metrics.py says why)."""

from __future__ import annotations

import numbers
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from app.contracts import telemetry_names as names
from app.contracts.events import EventType, TelemetryEvent
from app.contracts.stages import SeedStage

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


def real_number(value: object) -> float | None:
    """value as a float if it is a real number (bool excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


@dataclass(frozen=True)
class MetricSnapshot:
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

    def snapshot(self) -> MetricSnapshot:
        with self._lock:
            seeds = Counter(self._seed_stages.values())
            return MetricSnapshot(
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
        for key in names.PPO_STATISTICS:
            value = real_number(data.get(key))
            if value is not None:
                self._ppo[key] = value
        for window, key in (("batch", "avg_accuracy"), ("rolling", "rolling_avg_accuracy")):
            value = real_number(data.get(key))
            if value is not None:
                self._accuracy[window] = value
        reward = real_number(data.get("avg_reward"))
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
