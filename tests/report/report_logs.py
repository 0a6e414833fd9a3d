"""Event logs for the report's tests, written by the project's own JsonlSink: a small run
of two environments and two batches whose swimlane, anomalies and batches are known, in
one file, rotated, or split between two ranks; the report folded from a path; and a long
run's log, as `benchmarks/report.py` makes it."""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from app.contracts.events import EventType, Severity, TelemetryEvent
from instrumentation.event_log import join_event_log, start_event_log
from instrumentation.jsonl_reader import read_run_events
from instrumentation.report.history import HistoryFold, RunHistory, fold
from instrumentation.report.inputs import read_recorded_run, report_log_sets
from instrumentation.sinks.jsonl import JsonlSink

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "report.py"
START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
EPISODE_EPOCHS = 5
RUN_RECORD = {"run_id": "report-test", "processes": 1, "config": {"max_epochs": EPISODE_EPOCHS}}


class Clock:
    """Events timestamped one second apart, in the order they are made."""

    def __init__(self) -> None:
        self.ticks = 0

    def event(
        self,
        kind: EventType,
        data: dict[str, Any] | None = None,
        *,
        epoch: int | None = None,
        seed_id: str | None = None,
        severity: Severity = Severity.INFO,
        message: str = "",
    ) -> TelemetryEvent:
        self.ticks += 1
        slot = "block2_post" if seed_id else None
        timestamp = START + timedelta(seconds=self.ticks)
        return TelemetryEvent(
            event_type=kind,
            message=message,
            data=dict(data or {}),
            seed_id=seed_id,
            slot_id=slot,
            epoch=epoch,
            severity=severity,
            timestamp=timestamp,
        )


def update(clock: Clock, batch: int, **values: Any) -> TelemetryEvent:
    data = {
        "batch": batch,
        "avg_accuracy": 50.0 + batch,
        "rolling_avg_accuracy": 49.0 + batch,
        "avg_reward": 0.1 * batch,
        "policy_loss": 0.01,
        "value_loss": 0.5,
        "entropy": 1.2,
        "entropy_coef": 0.02,
        "approx_kl": 0.01,
        "clip_fraction": 0.1,
        "ratio_max": 1.3,
        "ratio_min": 0.8,
        "explained_variance": 0.4,
        **values,
    }
    return clock.event(EventType.PPO_UPDATE_COMPLETED, data)


def seed_event(
    clock: Clock, kind: EventType, env: int, seed: str, epoch: int, **data: Any
) -> TelemetryEvent:
    return clock.event(kind, {"env_id": env, **data}, epoch=epoch, seed_id=seed)


def epoch_done(clock: Clock, env: int, epoch: int, accuracy: float) -> TelemetryEvent:
    data = {"env_id": env, "val_accuracy": accuracy, "seed_stage": "DORMANT"}
    return clock.event(EventType.EPOCH_COMPLETED, data, epoch=epoch)


def two_batches() -> list[TelemetryEvent]:
    """Two batches of two environments, episodes of 4 logged epochs (run.json says 5):

    - batch 1, env 0: env0_seed_0 (conv_light) germinates and trains at epoch 1, blends
      at 2, is fossilized at 3. Env 1: env1_seed_0 (depthwise) germinates at 2, is culled
      at 3 and embargoed at 4. A ratio explosion just before the update.
    - batch 2, env 0: env0_seed_1 (norm) germinates at 2 and is still training when the
      episode ends; a gradient anomaly at epoch 3; the update's value loss is "NaN".
      After it, a reward-hacking warning that names batch 1.
    """
    c = Clock()
    changed, germinated = EventType.SEED_STAGE_CHANGED, EventType.SEED_GERMINATED
    events = []
    for epoch in range(1, 5):
        events += [epoch_done(c, 0, epoch, 40.0 + epoch), epoch_done(c, 1, epoch, 30.0 + epoch)]
        if epoch == 1:
            events += [
                seed_event(c, germinated, 0, "env0_seed_0", 1, blueprint_id="conv_light"),
                seed_event(c, changed, 0, "env0_seed_0", 1, to="TRAINING"),
            ]
        if epoch == 2:
            events += [
                seed_event(c, changed, 0, "env0_seed_0", 2, to="BLENDING"),
                seed_event(c, germinated, 1, "env1_seed_0", 2, blueprint_id="depthwise"),
                seed_event(c, changed, 1, "env1_seed_0", 2, to="TRAINING"),
            ]
        if epoch == 3:
            events += [
                seed_event(c, changed, 0, "env0_seed_0", 3, to="FOSSILIZED"),
                seed_event(
                    c,
                    EventType.SEED_FOSSILIZED,
                    0,
                    "env0_seed_0",
                    3,
                    blueprint_id="conv_light",
                    improvement=2.5,
                    epochs_total=3,
                ),
                seed_event(c, changed, 1, "env1_seed_0", 3, to="CULLED"),
                seed_event(
                    c,
                    EventType.SEED_CULLED,
                    1,
                    "env1_seed_0",
                    3,
                    blueprint_id="depthwise",
                    improvement=-1.0,
                    reason="controller",
                ),
            ]
        if epoch == 4:
            events.append(seed_event(c, changed, 1, "env1_seed_0", 4, to="EMBARGOED"))
    explosion = {"anomaly_type": "ratio_explosion", "detail": "ratio_max=6.100 > 5.0"}
    events += [
        c.event(EventType.RATIO_EXPLOSION_DETECTED, explosion, severity=Severity.WARNING),
        update(c, 1, ratio_max=6.1),
    ]
    for epoch in range(1, 5):
        events += [epoch_done(c, 0, epoch, 50.0 + epoch), epoch_done(c, 1, epoch, 35.0 + epoch)]
        if epoch == 2:
            events += [
                seed_event(c, germinated, 0, "env0_seed_1", 2, blueprint_id="norm"),
                seed_event(c, changed, 0, "env0_seed_1", 2, to="TRAINING"),
            ]
        if epoch == 3:
            gradient = {"env_id": 1, "epoch": 3, "kind": "exploding", "grad_norm": 1e9}
            events.append(
                c.event(EventType.GRADIENT_ANOMALY, gradient, epoch=3, severity=Severity.WARNING)
            )
    hacking = {"kind": "trend_divergence", "batch": 1}
    events += [
        update(c, 2, value_loss="NaN"),
        c.event(EventType.REWARD_HACKING_SUSPECTED, hacking, severity=Severity.WARNING),
    ]
    return events


def write_run(
    telemetry_dir: Path,
    events: Iterable[TelemetryEvent],
    record: dict[str, Any] | None = None,
    max_bytes: int | None = None,
) -> Path:
    """A run directory with run.json (record, default RUN_RECORD) and a log of events."""
    sink = start_event_log(telemetry_dir, record or RUN_RECORD, max_bytes=max_bytes, keep=1000)
    _write(sink, events)
    return sink.path.parent


def write_ranks(telemetry_dir: Path, events: Sequence[TelemetryEvent]) -> Path:
    """A run of two ranks: rank 1 logs environment 1's events, rank 0 every other."""
    rank0 = start_event_log(telemetry_dir, {**RUN_RECORD, "processes": 2}, rank=0)
    rank1 = join_event_log(rank0.path.parent, 1)
    _write(rank1, [e for e in events if e.data.get("env_id") == 1])
    _write(rank0, [e for e in events if e.data.get("env_id") != 1])
    return rank0.path.parent


def _write(sink: JsonlSink, events: Iterable[TelemetryEvent]) -> None:
    for event in events:
        sink.emit(event)
    sink.close()


def folded(path: Path) -> RunHistory:
    """The history `esper report` draws for path."""
    record = read_recorded_run(path)
    folder = HistoryFold(record.episode_epochs())
    return fold(read_run_events(report_log_sets(path), folder.on_error), folder)


def long_run_log(directory: Path, events: int) -> Path:
    """A run directory in `directory` whose log holds `events` events in a default run's
    proportions (`benchmarks/report.py`)."""
    run: Path = _benchmark().events_log(directory, events)
    return run


@functools.cache
def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("report_benchmark", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
