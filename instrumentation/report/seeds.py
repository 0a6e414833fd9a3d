"""The seed swimlane of a run, folded from its event stream: each environment's seeds as
consecutive segments of one stage each, and where each seed ended (fossilized or culled).

Every position is kept two ways, as a log may allow only one of them:

- `Position.epoch`: the environment's epoch in run order, its episodes laid one after
  another (an episode takes `episode_epochs`, or as many epochs as it was seen to run,
  whichever is more). Events of this project's logs carry their `epoch`; an epoch lower
  than one already seen in the episode starts the environment's next episode.
- `Position.seconds`: the event's timestamp. The original system's lifecycle events carry
  no epoch (`tests/fixtures/`), so its swimlane can only be drawn in time.

A seed still live when its episode ends (the host is rebuilt for the next one) ends there.
A log without epochs has no epoch boundaries, but the host stabilizes once per episode
before any seed may germinate (TAMIYO_INITIATED), so that event ends the environment's
previous seeds, at the environment's last event before it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from app.contracts.events import EventType, TelemetryEvent
from app.contracts.stages import SeedStage
from instrumentation.report.values import finite, is_integer

# Stages that end a seed's life in its slot; SEED_FOSSILIZED and SEED_CULLED mark them.
_ENDING = frozenset({SeedStage.FOSSILIZED.name, SeedStage.CULLED.name})
STAGE_NAMES = tuple(stage.name for stage in SeedStage)
_SWIMLANE = "swimlane"
_EPISODES = "final accuracy per episode"


@dataclass(frozen=True)
class Position:
    """Where an event happened in its environment: the epoch in run order (None when the
    log does not say) and its time in POSIX seconds."""

    epoch: int | None
    seconds: float


@dataclass(frozen=True)
class Segment:
    """A seed's stay in one stage, from start to end."""

    env_id: int
    seed_id: str
    blueprint: str
    stage: str
    start: Position
    end: Position


@dataclass(frozen=True)
class SeedEnd:
    """Where a seed was fossilized or culled, with what the event said about it."""

    env_id: int
    seed_id: str
    blueprint: str
    outcome: str
    at: Position
    note: str


@dataclass
class SeedHistory:
    """The swimlane, the outcomes by blueprint and each environment's final validation
    accuracy per episode (episode number, accuracy); `episode_epochs` as configured,
    when known."""

    episode_epochs: int | None = None
    segments: list[Segment] = field(default_factory=list)
    ends: list[SeedEnd] = field(default_factory=list)
    germinated: Counter[str] = field(default_factory=Counter)
    fossilized: Counter[str] = field(default_factory=Counter)
    culled: Counter[str] = field(default_factory=Counter)
    episode_accuracy: dict[int, list[tuple[int, float]]] = field(default_factory=dict)

    @property
    def has_epochs(self) -> bool:
        """Whether every segment and end can be placed by epoch."""
        positions = [s.start for s in self.segments] + [s.end for s in self.segments]
        positions += [end.at for end in self.ends]
        return bool(positions) and all(p.epoch is not None for p in positions)

    @property
    def env_ids(self) -> list[int]:
        return sorted({s.env_id for s in self.segments} | {e.env_id for e in self.ends})


@dataclass
class _Clock:
    """One environment's place in the run."""

    offset: int = 0  # epochs of its earlier episodes
    high: int = 0  # the highest epoch seen in the current episode
    episode: int = 1
    seconds: float | None = None  # the time of its last event
    accuracy: float | None = None  # the last val_accuracy of the current episode


@dataclass
class _Live:
    """A seed in its current stage, since start."""

    env_id: int
    slot: str | None
    blueprint: str
    stage: str
    start: Position


_Handler = Callable[["SeedFold", TelemetryEvent, int, Position], None]


class SeedFold:
    """Builds a SeedHistory from events given one at a time (`add`), then `finish`.

    Events a chart cannot place (no integer `env_id`, no seed id, an unknown stage) are
    left out of it and counted in `skipped`, by chart and reason.
    """

    def __init__(self, skipped: Counter[str], episode_epochs: int | None = None) -> None:
        self.history = SeedHistory(episode_epochs)
        self._skipped = skipped
        self._clocks: dict[int, _Clock] = {}
        self._live: dict[str, _Live] = {}
        self._blueprints: dict[str, str] = {}

    def add(self, event: TelemetryEvent) -> None:
        kind = event.event_type
        if kind is EventType.SEED_GERMINATED:
            self.history.germinated[self._blueprint_of(event)] += 1
        elif kind is EventType.SEED_FOSSILIZED:
            self.history.fossilized[self._blueprint_of(event)] += 1
        elif kind is EventType.SEED_CULLED:
            self.history.culled[self._blueprint_of(event)] += 1
        handler = self._HANDLERS.get(kind)
        if handler is None:
            return
        env_id = event.data.get("env_id")
        if not is_integer(env_id):
            self._skip(kind, "no integer env_id")
            return
        handler(self, event, env_id, self._advance(env_id, event))

    def finish(self) -> SeedHistory:
        """The history, with every environment's last episode ended."""
        for env_id, clock in self._clocks.items():
            self._end_episode(env_id, clock)
        return self.history

    def _advance(self, env_id: int, event: TelemetryEvent) -> Position:
        """The event's position in its environment, ending the environment's episode
        first when the event's epoch shows that a new one began."""
        clock = self._clocks.setdefault(env_id, _Clock())
        epoch = event.epoch
        # Seeds germinate only once the host stabilized: any still live are from an
        # earlier episode.
        stabilized = event.event_type is EventType.TAMIYO_INITIATED and any(
            live.env_id == env_id for live in self._live.values()
        )
        if epoch is not None and (epoch < clock.high or stabilized):
            self._end_episode(env_id, clock)
        elif stabilized and clock.seconds is not None:
            self._end_seeds(env_id, Position(None, clock.seconds))
        seconds = event.timestamp.timestamp()
        clock.seconds = seconds
        if epoch is None:
            return Position(None, seconds)
        clock.high = max(clock.high, epoch)
        return Position(clock.offset + epoch, seconds)

    def _end_episode(self, env_id: int, clock: _Clock) -> None:
        length = max(clock.high, self.history.episode_epochs or 0)
        seconds = clock.seconds if clock.seconds is not None else 0.0
        self._end_seeds(env_id, Position(clock.offset + length, seconds))
        if clock.accuracy is not None:
            self.history.episode_accuracy.setdefault(env_id, []).append(
                (clock.episode, clock.accuracy)
            )
        clock.offset += length
        clock.high = 0
        clock.episode += 1
        clock.accuracy = None

    def _end_seeds(self, env_id: int, at: Position) -> None:
        for seed_id in [key for key, live in self._live.items() if live.env_id == env_id]:
            self._close(seed_id, at)

    def _epoch_completed(self, event: TelemetryEvent, env_id: int, at: Position) -> None:
        accuracy = finite(event.data.get("val_accuracy"))
        if accuracy is not None:
            self._clocks[env_id].accuracy = accuracy
        else:
            self._skipped[f"{_EPISODES}: EPOCH_COMPLETED without a numeric val_accuracy"] += 1

    def _placed(self, event: TelemetryEvent, env_id: int, at: Position) -> None:
        """Nothing to draw: the event only moves its environment's clock."""

    def _germinated(self, event: TelemetryEvent, env_id: int, at: Position) -> None:
        seed_id = self._seed_id(event)
        if seed_id is None:
            return
        # A slot holds one seed: whatever a log left live there (its end rotated away,
        # say) ended when this one germinated.
        for key, live in list(self._live.items()):
            if live.env_id == env_id and live.slot == event.slot_id:
                self._close(key, at)
        blueprint = self._blueprint_of(event)
        self._blueprints[seed_id] = blueprint
        stage = SeedStage.GERMINATED.name
        self._live[seed_id] = _Live(env_id, event.slot_id, blueprint, stage, at)

    def _stage_changed(self, event: TelemetryEvent, env_id: int, at: Position) -> None:
        seed_id = self._seed_id(event)
        stage = event.data.get("to")
        if seed_id is None:
            return
        if stage not in STAGE_NAMES:
            self._skip(event.event_type, "no known stage in `to`")
            return
        self._close(seed_id, at)
        if stage in _ENDING or stage == SeedStage.DORMANT.name:
            return
        blueprint = self._blueprints.get(seed_id, "unknown")
        self._live[seed_id] = _Live(env_id, event.slot_id, blueprint, stage, at)

    def _ended(self, event: TelemetryEvent, env_id: int, at: Position) -> None:
        seed_id = self._seed_id(event)
        if seed_id is None:
            return
        self._close(seed_id, at)
        fossilized = event.event_type is EventType.SEED_FOSSILIZED
        outcome = "fossilized" if fossilized else "culled"
        blueprint = self._blueprint_of(event)
        end = SeedEnd(env_id, seed_id, blueprint, outcome, at, _note(event.data, fossilized))
        self.history.ends.append(end)

    def _close(self, seed_id: str, at: Position) -> None:
        live = self._live.pop(seed_id, None)
        if live is not None:
            self.history.segments.append(
                Segment(live.env_id, seed_id, live.blueprint, live.stage, live.start, at)
            )

    def _seed_id(self, event: TelemetryEvent) -> str | None:
        seed_id = event.seed_id or event.data.get("seed_id")
        if isinstance(seed_id, str) and seed_id:
            return seed_id
        self._skip(event.event_type, "no seed id")
        return None

    def _blueprint_of(self, event: TelemetryEvent) -> str:
        blueprint = event.data.get("blueprint_id")
        if isinstance(blueprint, str) and blueprint:
            return blueprint
        seed_id = event.seed_id or event.data.get("seed_id")
        return self._blueprints.get(seed_id, "unknown") if isinstance(seed_id, str) else "unknown"

    def _skip(self, kind: EventType, reason: str) -> None:
        self._skipped[f"{_SWIMLANE}: {kind.value} with {reason}"] += 1

    _HANDLERS: ClassVar[dict[EventType, _Handler]] = {
        EventType.EPOCH_COMPLETED: _epoch_completed,
        EventType.TAMIYO_INITIATED: _placed,
        EventType.SEED_GERMINATED: _germinated,
        EventType.SEED_STAGE_CHANGED: _stage_changed,
        EventType.SEED_FOSSILIZED: _ended,
        EventType.SEED_CULLED: _ended,
    }


def _note(data: dict[str, Any], fossilized: bool) -> str:
    """What a seed's end says, for its marker's hover text."""
    parts = []
    improvement = finite(data.get("improvement"))
    if improvement is not None:
        parts.append(f"improvement {improvement:+.2f} pp")
    epochs = data.get("epochs_total")
    if is_integer(epochs):
        parts.append(f"{epochs} epochs in all")
    if not fossilized and isinstance(data.get("reason"), str):
        parts.append(f"reason {data['reason']}")
    return ", ".join(parts)
