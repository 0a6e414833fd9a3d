"""Shared by the replay tests: `esper replay` in this process or in a child, exporting
over real OTLP to a fresh in-process receiver, readers of what it received, and the run
directory of a two-process run."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import redirect_stderr
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from otel_runs import clear_otel_environment
from receivers import GrpcReceiver, HttpReceiver, Received, attributes_of

from app.cli import main
from app.contracts import telemetry_names as names
from app.contracts.events import EventType, TelemetryEvent
from instrumentation.otel.adapter import timestamp_ns
from instrumentation.sinks.strict_json import strict_json_text


@dataclass
class Replayed:
    code: int
    stderr: str
    received: Received

    def spans(self, name: str | None = None) -> list[Span]:
        return [span for span in self.received.spans() if name in (None, span.name)]

    def span_events(self) -> dict[str, tuple[Span, Any]]:
        """Every exported span event by its esper.event.id, with the span holding it."""
        found = {}
        for span in self.spans():
            for event in span.events:
                found[attributes_of(event.attributes)[names.EVENT_ID]] = (span, event)
        return found

    def event_times(self) -> Counter[tuple[str, int]]:
        """(esper.event.id, time) of every exported span event, duplicates counted."""
        return Counter(
            (attributes_of(event.attributes)[names.EVENT_ID], event.time_unix_nano)
            for span in self.spans()
            for event in span.events
        )


def _receiver(protocol: str) -> GrpcReceiver | HttpReceiver:
    return (GrpcReceiver() if protocol == "grpc" else HttpReceiver()).start()


def replay(protocol: str, args: Sequence[str], otel: Mapping[str, str] | None = None) -> Replayed:
    """`esper replay ARGS` in this process, exporting to a fresh receiver; `otel` adds
    OTEL_* variables."""
    receiver = _receiver(protocol)
    try:
        with pytest.MonkeyPatch.context() as monkeypatch, redirect_stderr(io.StringIO()) as err:
            clear_otel_environment(monkeypatch)
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            for name, value in (otel or {}).items():
                monkeypatch.setenv(name, value)
            code = main(["replay", *args])
        return Replayed(code, err.getvalue(), receiver)
    finally:
        receiver.stop()


def replay_in_child(
    args: Sequence[str],
    *,
    python: Sequence[str] = ("-m", "app"),
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> Replayed:
    """`esper replay ARGS` in a child process (`python` says how the child starts it),
    exporting over OTLP/HTTP to a fresh receiver in this process."""
    receiver = _receiver("http/protobuf")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        **(extra_env or {}),
    )
    try:
        done = subprocess.run(
            [sys.executable, *python, "replay", *args],
            env=environment,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Replayed(done.returncode, done.stderr, receiver)
    finally:
        receiver.stop()


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def original_ns(record: dict[str, Any]) -> int:
    return timestamp_ns(datetime.fromisoformat(record["timestamp"]))


# A two-process run: rank 0 steps envs 0-1 and updates the policy, rank 1 steps envs 2-3.
RANK_ENVS = {0: (0, 1), 1: (2, 3)}
RUN_START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
BATCH_SECONDS = 60.0
EPOCHS = 3


@dataclass
class RankRun:
    """A two-process run directory, and the batch each of its events belongs to."""

    path: Path
    records: list[dict[str, Any]]
    batch_of: dict[str, int]


def write_two_rank_run(run_dir: Path, batches: int = 2) -> RankRun:
    """A run directory as two ranks' JSONL sinks write it: `events.jsonl` (rank 0: envs
    0-1 and every PPO_UPDATE_COMPLETED), `events-rank1.jsonl` (envs 2-3) with its first
    batch rotated into `events-rank1.jsonl.1`, and `run.json`. The ranks' epochs
    interleave in time; each update comes after every rank's episodes of its batch."""
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"run_id": "two-ranks"}))
    files = {
        0: [run_dir / "events.jsonl"] * batches,
        1: [run_dir / "events-rank1.jsonl.1"] + [run_dir / "events-rank1.jsonl"] * (batches - 1),
    }
    run = RankRun(run_dir, [], {})
    for batch in range(1, batches + 1):
        for rank, envs in RANK_ENVS.items():
            events = [event for env_id in envs for event in _episode(env_id, batch)]
            if rank == 0:
                events.append(_update(batch))
            events.sort(key=lambda event: event.timestamp)
            records = [{**event.to_record(), "rank": rank} for event in events]
            with files[rank][batch - 1].open("a") as log:
                log.writelines(strict_json_text(record) + "\n" for record in records)
            run.records += records
            run.batch_of.update((record["event_id"], batch) for record in records)
    return run


def _moment(batch: int, seconds: float) -> datetime:
    return RUN_START + timedelta(seconds=(batch - 1) * BATCH_SECONDS + seconds)


def _episode(env_id: int, batch: int) -> list[TelemetryEvent]:
    """One env's episode of batch: a seed germinated in epoch 1, then every epoch."""
    seed_id = f"env{env_id}_seed_{batch - 1}"
    germinated = TelemetryEvent(
        EventType.SEED_GERMINATED,
        f"Seed {seed_id} germinated",
        data={"blueprint_id": "conv_light", "seed_id": seed_id, "params": 1184, "env_id": env_id},
        seed_id=seed_id,
        slot_id="block2_post",
        epoch=1,
        timestamp=_moment(batch, 1.5 + env_id / 10),
    )
    return [germinated] + [_epoch(env_id, batch, epoch) for epoch in range(1, EPOCHS + 1)]


def _epoch(env_id: int, batch: int, epoch: int) -> TelemetryEvent:
    # Envs finish an epoch a tenth of a second apart: the ranks' lines interleave.
    return TelemetryEvent(
        EventType.EPOCH_COMPLETED,
        f"Epoch {epoch} completed",
        data={
            "env_id": env_id,
            "train_loss": 2.0 / epoch,
            "train_accuracy": 30.0 + 10 * epoch,
            "val_loss": 2.1 / epoch,
            "val_accuracy": 28.0 + 10 * epoch,
            "seed_stage": "GERMINATED",
            "alpha": 0.0,
            "host_stabilized": epoch > 1,
            "rolled_back": False,
            "duration_s": 1.0,
        },
        epoch=epoch,
        timestamp=_moment(batch, epoch + env_id / 10),
    )


def _update(batch: int) -> TelemetryEvent:
    return TelemetryEvent(
        EventType.PPO_UPDATE_COMPLETED,
        f"PPO update {batch}",
        data={
            "batch": batch,
            "episodes_completed": batch * sum(map(len, RANK_ENVS.values())),
            "avg_accuracy": 48.0,
            "avg_reward": 0.25,
            "rolling_avg_accuracy": 47.5,
            "train_steps": batch,
            "policy_loss": -0.01,
            "value_loss": 0.4,
            "entropy": 1.2,
            "entropy_coef": 0.01,
            "approx_kl": 0.004,
            "clip_fraction": 0.05,
            "ratio_max": 1.1,
            "ratio_min": 0.9,
            "ratio_std": 0.03,
            "explained_variance": 0.2,
            "early_stop_epoch": None,
        },
        timestamp=_moment(batch, EPOCHS + 2),
    )
