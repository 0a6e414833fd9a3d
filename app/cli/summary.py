"""The lines `esper train` prints when a run ends, however it ends: what it trained, what
it checked, where its events went and what was lost on the way.

In a run of several processes rank 0 prints them for every rank: each rank sums up what
its own environments and sinks did in a `RankTally`, and rank 0 adds them up.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
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
class RankTally:
    """What one process did and wrote, in a form that can travel to rank 0."""

    rank: int
    emitted: int
    events_by_type: dict[str, int]
    outcomes: Counter[tuple[str, SeedStage]]
    steps_checked: int
    isolation_probes: int
    memory_samples: int
    peak_fraction: float
    memory_limit: str
    log_path: str
    export: str
    losses: list[str] = field(default_factory=list)
    sink_errors: dict[str, int] = field(default_factory=dict)


def tally(run: FinishedRun, rank: int = 0) -> RankTally:
    """This process's share of the summary."""
    trainer, hub, memory = run.trainer, run.hub, run.trainer.memory
    outcomes: Counter[tuple[str, SeedStage]] = Counter()
    for env in trainer.envs:
        outcomes += env.seed_outcomes
    limit = memory.limit
    return RankTally(
        rank=rank,
        emitted=hub.emitted,
        events_by_type={t.value: n for t, n in hub.events_by_type.items()},
        outcomes=outcomes,
        steps_checked=sum(env.check_counts.steps_checked for env in trainer.envs),
        isolation_probes=sum(env.check_counts.isolation_probes for env in trainer.envs),
        memory_samples=memory.samples,
        peak_fraction=memory.peak_fraction,
        memory_limit=f"{limit.limit_bytes / 2**30:.1f} GiB {limit.source}",
        log_path=str(run.log_path),
        export=export_line(run.otel),
        losses=log_loss_lines(hub.sinks),
        sink_errors={name: count for name, count in hub.sink_errors.items() if count},
    )


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


def print_summary(run: FinishedRun, tallies: list[RankTally], lost: list[int]) -> None:
    """The summary of `run`, with every rank's tally (rank 0's alone in a run of one
    process); `lost` names the ranks that could not send theirs."""
    print("\n".join(_lines(run, tallies, lost)), file=sys.stderr)


def _lines(run: FinishedRun, tallies: list[RankTally], lost: list[int]) -> list[str]:
    progress = run.trainer.progress
    lines = [f"esper: training {run.status} in {run.wall_s:.1f}s", f"  run id:    {run.run_id}"]
    if progress.accuracies:
        lines += [
            f"  episodes:  {progress.episodes_completed} in {progress.batches_completed} batches",
            f"  accuracy:  {progress.accuracies[-1]:.2f}% last batch, "
            f"{fmean(progress.accuracies):.2f}% rolling",
            f"  reward:    {progress.rewards[-1]:.3f} per episode, last batch",
            *_policy_lines(run.trainer, tallies),
        ]
    by_type: Counter[str] = Counter()
    for part in tallies:
        by_type.update(part.events_by_type)
    events = ", ".join(f"{t}={n}" for t, n in sorted(by_type.items()))
    emitted = sum(part.emitted for part in tallies)
    lines += [f"  events:    {emitted} ({events})", f"  checks:    {_checks(tallies)}"]
    several = len(tallies) > 1 or lost
    for part in tallies:
        rank = f" (rank {part.rank})" if several else ""
        lines += [f"  event log: {part.log_path}{rank}", part.export + rank, *part.losses]
        if part.sink_errors:
            lines.append(f"  sink errors: {part.sink_errors}{rank}")
    if lost:
        ranks = ", ".join(str(rank) for rank in lost)
        lines.append(f"  ranks {ranks} sent no summary: their counts are left out")
    lines += run.stop.summary_lines()
    lines += checkpoint_lines(run.saver)
    return lines


def _policy_lines(trainer: VectorizedTrainer, tallies: list[RankTally]) -> list[str]:
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
    for part in tallies:
        outcomes += part.outcomes
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


def _checks(tallies: list[RankTally]) -> str:
    """How much the health checks looked at, so that a quiet run reads as checked."""
    steps = sum(part.steps_checked for part in tallies)
    probes = sum(part.isolation_probes for part in tallies)
    samples = sum(part.memory_samples for part in tallies)
    peak = max(tallies, key=lambda part: part.peak_fraction)
    return (
        f"{steps} host steps ({probes} isolation probes), {samples} memory samples "
        f"(peak RSS {peak.peak_fraction:.1%} of {peak.memory_limit})"
    )
