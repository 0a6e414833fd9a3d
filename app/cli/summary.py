"""The lines `esper train` prints when a run ends, however it ends: what it trained, what
it checked, where its events went and what was lost on the way."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from app.contracts.stages import SeedStage
from app.interrupts import StopRequest
from app.model.slot import OUTCOMES
from app.training.checkpoint_saver import CheckpointSaver, checkpoint_lines
from app.training.vectorized import VectorizedTrainer
from instrumentation.event_log import log_loss_lines
from instrumentation.hub import TelemetryHub
from instrumentation.otel import OpenTelemetrySession
from instrumentation.otel.summary import export_line


@dataclass(frozen=True)
class FinishedRun:
    """A run that has ended: how (`status`, e.g. "completed"), after how long, and the
    objects that know what it did and what it wrote."""

    status: str
    run_id: str
    wall_s: float
    trainer: VectorizedTrainer
    hub: TelemetryHub
    log_path: Path
    otel: OpenTelemetrySession
    stop: StopRequest
    saver: CheckpointSaver | None


def print_summary(run: FinishedRun) -> None:
    print("\n".join(_lines(run)), file=sys.stderr)


def _lines(run: FinishedRun) -> list[str]:
    progress = run.trainer.progress
    lines = [f"esper: training {run.status} in {run.wall_s:.1f}s", f"  run id:    {run.run_id}"]
    if progress.accuracies:
        lines += [
            f"  episodes:  {progress.episodes_completed} in {progress.batches_completed} batches",
            f"  accuracy:  {progress.accuracies[-1]:.2f}% last batch, "
            f"{fmean(progress.accuracies):.2f}% rolling",
            f"  reward:    {progress.rewards[-1]:.3f} per episode, last batch",
            *_policy_lines(run.trainer),
        ]
    hub = run.hub
    events = ", ".join(f"{t.value}={n}" for t, n in sorted(hub.events_by_type.items()))
    lines += [
        f"  events:    {hub.emitted} ({events})",
        f"  checks:    {_checks(run.trainer)}",
        f"  event log: {run.log_path}",
        export_line(run.otel),
    ]
    lines += log_loss_lines(hub.sinks)
    lines += run.stop.summary_lines()
    lines += checkpoint_lines(run.saver)
    errors = {name: count for name, count in hub.sink_errors.items() if count}
    if errors:
        lines.append(f"  sink errors: {errors}")
    return lines


def _policy_lines(trainer: VectorizedTrainer) -> list[str]:
    """What the controller did: its actions in the last batch, how the run's seeds ended
    by blueprint, and what to compare the accuracy with."""
    lines = []
    last = trainer.last_batch
    if last is not None and last.actions:
        total = sum(last.actions.values())
        shares = sorted(last.actions.items(), key=lambda item: (-item[1], item[0]))
        actions = ", ".join(f"{name} {count} ({count / total:.0%})" for name, count in shares)
        lines.append(f"  actions:   {actions} (last batch, {total} decisions)")
    outcomes: Counter[tuple[str, SeedStage]] = Counter()
    for env in trainer.envs:
        outcomes += env.seed_outcomes
    by_stage: dict[SeedStage, list[str]] = {}
    for (blueprint, stage), count in sorted(outcomes.items()):
        by_stage.setdefault(stage, []).append(f"{blueprint}={count}")
    ended = [f"{s.name.lower()} {', '.join(by_stage[s])}" for s in OUTCOMES if s in by_stage]
    if ended:
        lines.append(f"  seeds:     {'; '.join(ended)}")
    if trainer.config.controller != "static":
        lines.append(
            "  baseline:  the static host is not measured in this run; "
            "the same command with --controller static measures it"
        )
    return lines


def _checks(trainer: VectorizedTrainer) -> str:
    """How much the health checks looked at, so that a quiet run reads as checked."""
    memory = trainer.memory
    steps = sum(env.check_counts.steps_checked for env in trainer.envs)
    probes = sum(env.check_counts.isolation_probes for env in trainer.envs)
    limit_gib = memory.limit.limit_bytes / 2**30
    return (
        f"{steps} host steps ({probes} isolation probes), {memory.samples} memory samples "
        f"(peak RSS {memory.peak_fraction:.1%} of {limit_gib:.1f} GiB {memory.limit.source})"
    )
