"""What `esper report` costs on a long run's log: seconds to read and fold it, seconds to
draw the page, and the page's size, plain and gzipped.

The log is made up, written with the project's own JsonlSink, in the proportions of a
default run (4 environments, episodes of 22 epochs) at the `normal` telemetry level:
EPOCH_COMPLETED for every environment's epochs, a stabilization per episode, seeds that
germinate, train, blend and are fossilized or culled and embargoed, the controller's
commands, one PPO_UPDATE_COMPLETED per batch and, now and then, an anomaly, a host
health warning or a progress event. `events_log` is what the report's tests use for
their 100,000-event log.

    python benchmarks/report.py --events 100000
"""

from __future__ import annotations

import argparse
import gzip
import random
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from app.contracts.events import EventType, Severity, TelemetryEvent
from instrumentation.event_log import start_event_log
from instrumentation.jsonl_reader import read_run_events, run_log_sets
from instrumentation.report import write_report
from instrumentation.report.history import HistoryFold, fold
from instrumentation.report.inputs import read_recorded_run, thresholds
from instrumentation.report.page import render
from instrumentation.sinks.jsonl import JsonlSink

ENVS = 4
EPOCHS = 22
BLUEPRINTS = ("conv_light", "conv_heavy", "depthwise", "attention", "norm")
# Epochs a seed spends in each stage before moving on (PROBATIONARY: until judged).
STAGES = (("TRAINING", 3), ("BLENDING", 5), ("SHADOWING", 1), ("PROBATIONARY", 2))
START = datetime(2025, 12, 6, tzinfo=UTC)


class _Writer:
    """Events out to the sink, timestamped 10 ms apart, until `limit`."""

    def __init__(self, sink: JsonlSink, limit: int) -> None:
        self.sink, self.limit, self.count = sink, limit, 0

    @property
    def full(self) -> bool:
        return self.count >= self.limit

    def emit(self, event_type: EventType, data: dict[str, Any], **fields: Any) -> None:
        if self.full:
            return
        timestamp = START + timedelta(milliseconds=10 * self.count)
        self.sink.emit(TelemetryEvent(event_type, data=data, timestamp=timestamp, **fields))
        self.count += 1


@dataclass
class _Seed:
    seed_id: str
    blueprint: str
    stage: str
    since: int
    fate: str  # "fossilized", or the stage it is culled in


def events_log(directory: Path, events: int, seed: int = 0) -> Path:
    """A run directory under directory holding a log of exactly `events` events and a
    run.json."""
    chance = random.Random(seed)
    config = {"controller": "ppo", "envs": ENVS, "max_epochs": EPOCHS}
    record = {"run_id": "report-benchmark", "processes": 1, "config": config}
    sink = start_event_log(directory, record)
    writer = _Writer(sink, events)
    seeds_grown = [0] * ENVS
    batch = 0
    while not writer.full:
        batch += 1
        live: list[_Seed | None] = [None] * ENVS
        embargo = [0] * ENVS
        for epoch in range(1, EPOCHS + 1):
            for env in range(ENVS):
                _epoch(writer, chance, env, epoch, live, embargo, seeds_grown)
        _update(writer, chance, batch)
    sink.close()
    return sink.path.parent


def _epoch(
    writer: _Writer,
    chance: random.Random,
    env: int,
    epoch: int,
    live: list[_Seed | None],
    embargo: list[int],
    grown: list[int],
) -> None:
    accuracy = min(95.0, 20 + 3 * epoch + chance.gauss(0, 3))
    stage = live[env].stage if live[env] else "DORMANT"
    data = {
        "env_id": env,
        "train_loss": 1.0,
        "train_accuracy": accuracy,
        "val_loss": 1.1,
        "val_accuracy": accuracy,
        "seed_stage": stage,
        "alpha": 0.0,
        "host_stabilized": epoch >= 4,
        "rolled_back": False,
        "duration_s": 0.2,
    }
    writer.emit(EventType.EPOCH_COMPLETED, data, epoch=epoch)
    if epoch == 4:
        writer.emit(EventType.TAMIYO_INITIATED, {"env_id": env, "epoch": epoch}, epoch=epoch)
    if chance.random() < 0.002:
        anomaly = {
            "env_id": env,
            "epoch": epoch,
            "step": 3,
            "grad_norm": 1e9,
            "bound": 1e6,
            "kind": "exploding",
        }
        writer.emit(EventType.GRADIENT_ANOMALY, anomaly, epoch=epoch, severity=Severity.WARNING)
    seed = live[env]
    if seed is not None:
        _advance(writer, seed, env, epoch, live, embargo)
    elif embargo[env]:
        embargo[env] -= 1
    elif epoch >= 4 and epoch < EPOCHS - 3 and chance.random() < 0.3:
        live[env] = _germinate(writer, chance, env, epoch, grown)


def _germinate(
    writer: _Writer, chance: random.Random, env: int, epoch: int, grown: list[int]
) -> _Seed:
    blueprint = chance.choice(BLUEPRINTS)
    seed_id = f"env{env}_seed_{grown[env]}"
    grown[env] += 1
    fate = chance.choice(("fossilized", "fossilized", "BLENDING", "PROBATIONARY"))
    command = {
        "action": f"GERMINATE_{blueprint.upper()}",
        "env_id": env,
        "slot_id": "block2_post",
        "controller": "ppo",
        "blueprint": blueprint,
    }
    writer.emit(EventType.COMMAND_ISSUED, command, epoch=epoch)
    writer.emit(EventType.COMMAND_EXECUTED, command, epoch=epoch)
    germinated = {"blueprint_id": blueprint, "seed_id": seed_id, "params": 588, "env_id": env}
    writer.emit(EventType.SEED_GERMINATED, germinated, epoch=epoch, **_where(seed_id))
    seed = _Seed(seed_id, blueprint, "GERMINATED", epoch, fate)
    _change(writer, seed, env, epoch, "TRAINING")
    return seed


def _advance(
    writer: _Writer,
    seed: _Seed,
    env: int,
    epoch: int,
    live: list[_Seed | None],
    embargo: list[int],
) -> None:
    stays = dict(STAGES)
    if seed.stage == "EMBARGOED":
        if epoch - seed.since >= 3:
            _change(writer, seed, env, epoch, "DORMANT")
            live[env] = None
        return
    if epoch - seed.since < stays[seed.stage]:
        return
    if seed.stage == seed.fate:
        _end(writer, seed, env, epoch, EventType.SEED_CULLED, "CULLED")
        _change(writer, seed, env, epoch, "EMBARGOED")
    elif seed.stage == "PROBATIONARY":
        _end(writer, seed, env, epoch, EventType.SEED_FOSSILIZED, "FOSSILIZED")
        live[env] = None
        embargo[env] = EPOCHS  # the slot holds the fossilized seed until the episode ends
    else:
        names = [name for name, _ in STAGES]
        _change(writer, seed, env, epoch, names[names.index(seed.stage) + 1])


def _change(writer: _Writer, seed: _Seed, env: int, epoch: int, stage: str) -> None:
    data = {"from": seed.stage, "to": stage, "env_id": env}
    writer.emit(EventType.SEED_STAGE_CHANGED, data, epoch=epoch, **_where(seed.seed_id))
    seed.stage, seed.since = stage, epoch


def _end(writer: _Writer, seed: _Seed, env: int, epoch: int, kind: EventType, stage: str) -> None:
    _change(writer, seed, env, epoch, stage)
    data = {
        "blueprint_id": seed.blueprint,
        "seed_id": seed.seed_id,
        "env_id": env,
        "improvement": 1.5,
        "blending_delta": 0.8,
        "counterfactual": 1.2,
        "epochs_in_stage": 2,
        "epochs_total": 11,
        "params_added": 588,
        "reason": "controller",
    }
    writer.emit(kind, data, epoch=epoch, **_where(seed.seed_id))


def _where(seed_id: str) -> dict[str, Any]:
    return {"seed_id": seed_id, "slot_id": "block2_post"}


def _update(writer: _Writer, chance: random.Random, batch: int) -> None:
    ratio_max = 1.2 + abs(chance.gauss(0, 1.2))
    statistics = {
        "train_steps": batch,
        "policy_loss": chance.gauss(0, 0.1),
        "value_loss": abs(chance.gauss(0.5, 0.2)),
        "entropy": 1.2 - batch * 1e-4,
        "approx_kl": abs(chance.gauss(0.01, 0.005)),
        "clip_fraction": 0.1,
        "ratio_max": ratio_max,
        "ratio_min": 0.75,
        "ratio_std": 0.05,
        "explained_variance": chance.uniform(-0.2, 0.9),
    }
    if ratio_max > 5:
        anomaly = {
            "anomaly_type": "ratio_explosion",
            "detail": f"ratio_max={ratio_max:.3f} > 5",
            **statistics,
        }
        writer.emit(EventType.RATIO_EXPLOSION_DETECTED, anomaly, severity=Severity.WARNING)
    accuracy = min(90.0, 40 + batch * 0.05 + chance.gauss(0, 2))
    data = {
        "batch": batch,
        "episodes_completed": batch * ENVS,
        "entropy_coef": 0.002,
        "early_stop_epoch": None,
        "avg_accuracy": accuracy,
        "avg_reward": accuracy / 100,
        "rolling_avg_accuracy": accuracy - 1,
        **statistics,
    }
    writer.emit(EventType.PPO_UPDATE_COMPLETED, data, message=f"PPO update {batch}")


def measure(run_dir: Path) -> dict[str, float]:
    """Seconds to read and fold, to render, for the whole of `write_report` (a call of its
    own, after the parts); page bytes."""
    record = read_recorded_run(run_dir)
    started = time.perf_counter()
    folder = HistoryFold(record.episode_epochs())
    history = fold(read_run_events(run_log_sets(run_dir), folder.on_error), folder)
    folded = time.perf_counter()
    page = render(history, record, thresholds(record), run_dir).encode("utf-8")
    rendered = time.perf_counter()
    result = write_report(run_dir, run_dir / "report.html")
    written = time.perf_counter()
    return {
        "events": history.events,
        "read + fold s": folded - started,
        "render s": rendered - folded,
        "total (write_report) s": written - rendered,
        "page MB": result.size / 1e6,
        "gzip MB": len(gzip.compress(page, 6)) / 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="the median is shown")
    args = parser.parse_args()
    with TemporaryDirectory() as directory:
        run_dir = events_log(Path(directory), args.events)
        rounds = [measure(run_dir) for _ in range(args.rounds)]
    print(f"median of {args.rounds} rounds")
    for name in rounds[0]:
        value = statistics.median(found[name] for found in rounds)
        print(f"{name:>22}  {value:,.2f}" if isinstance(value, float) else f"{name:>22}  {value:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
