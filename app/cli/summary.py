"""The lines `esper train` prints when a run ends, however it ends: what it trained, what
it checked, where its events went and what was lost on the way, and where to look next
(where_to_look.py).

In a run of several processes rank 0 prints them for every rank: each rank sums up what
its own environments and sinks did in a `RankTally`, and rank 0 adds them up.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean

from app.cli.where_to_look import RunWindow, where_to_look
from app.contracts.events import EventType, TelemetryLevel, minimum_level
from app.contracts.stages import SeedStage
from app.interrupts import StopRequest
from app.model.slot import OUTCOMES
from app.plurals import counted
from app.training.checkpoint_saver import CheckpointSaver, checkpoint_lines
from app.training.config import RunConfig
from app.training.vectorized import VectorizedTrainer
from instrumentation.event_log import log_loss_lines
from instrumentation.hub import TelemetryHub
from instrumentation.otel import OpenTelemetrySession
from instrumentation.otel.summary import export_line, otlp_targets


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
    window: RunWindow
    trainer: VectorizedTrainer
    hub: TelemetryHub
    log_path: Path
    otel: OpenTelemetrySession
    stop: StopRequest
    saver: CheckpointSaver | None
    report: str | None = None  # the HTML report written at the end, in a line


def print_summary(run: FinishedRun, tallies: list[RankTally], lost: list[int]) -> None:
    """The summary of `run`, with every rank's tally (rank 0's alone in a run of one
    process); `lost` names the ranks that could not send theirs."""
    print("\n".join(_lines(run, tallies, lost)), file=sys.stderr)


def _lines(run: FinishedRun, tallies: list[RankTally], lost: list[int]) -> list[str]:
    progress = run.trainer.progress
    by_type = events_by_type(tallies)
    lines = [f"esper: training {run.status} in {run.wall_s:.1f}s", f"  run id:    {run.run_id}"]
    if progress.accuracies:
        batches = counted(progress.batches_completed, "batch", "batches")
        lines += [
            f"  episodes:  {progress.episodes_completed} in {batches}",
            f"  accuracy:  {progress.accuracies[-1]:.2f}% last batch, "
            f"{fmean(progress.accuracies):.2f}% rolling",
            f"  reward:    {progress.rewards[-1]:.3f} per episode, last batch",
            *_policy_lines(run.trainer, tallies),
        ]
    lines += learning_lines(run, by_type)
    emitted = sum(part.emitted for part in tallies)
    lines += [f"  events:    {events_part(emitted, by_type)}", f"  checks:    {_checks(tallies)}"]
    several = len(tallies) > 1 or lost
    for part in tallies:
        rank = f" (rank {part.rank})" if several else ""
        lines += [f"  event log: {part.log_path}{rank}", part.export + rank, *part.losses]
        if part.sink_errors:
            lines.append(f"  sink errors: {part.sink_errors}{rank}")
    if lost:
        lines.append(lost_ranks_line(lost))
    lines += run.stop.summary_lines()
    lines += checkpoint_lines(run.saver)
    targets = otlp_targets(run.otel)
    lines += where_to_look(run.log_path.parent, run.run_id, targets, run.window, report=run.report)
    return lines


def events_by_type(tallies: list[RankTally]) -> Counter[str]:
    by_type: Counter[str] = Counter()
    for part in tallies:
        by_type.update(part.events_by_type)
    return by_type


def events_part(emitted: int, by_type: Counter[str]) -> str:
    """`7 (EPOCH_COMPLETED=6, PPO_UPDATE_COMPLETED=1)`, or `none`."""
    if not emitted:
        return "none"
    return f"{emitted} ({', '.join(f'{t}={n}' for t, n in sorted(by_type.items()))})"


def lost_ranks_line(lost: list[int]) -> str:
    ranks = ", ".join(str(rank) for rank in lost)
    if len(lost) == 1:
        return f"  rank {ranks} sent no summary: its counts are left out"
    return f"  ranks {ranks} sent no summary: their counts are left out"


def learning_lines(run: FinishedRun, by_type: Counter[str]) -> list[str]:
    """Whether any host stabilized (said of a run stopped in its first episodes too),
    and what the last PPO update measured.

    Before the latch WAIT is the only action open (germination waits for a stabilized
    host, and there is no seed to fossilize or cull), so the policy had no choice: its
    update's entropy, KL and clip fraction are zeros that say nothing about it.
    """
    config = run.trainer.config
    latched = _any_host_stabilized(config.telemetry_level, by_type)
    # The memory is sampled once per lockstep epoch, so the samples count the epochs
    # this process ran: max_epochs or more, and whole episodes ran.
    reached = min(run.trainer.memory.samples, config.max_epochs)
    lines = []
    if latched is False and reached:
        lines.append(latch_line(config, None if run.status == "completed" else reached))
    last = run.trainer.last_batch
    metrics = None if last is None else last.metrics
    if metrics is None:
        return lines
    if latched is False:
        lines.append(
            "  ppo:       no decision to learn from: WAIT was the only action open "
            "before a host stabilized"
        )
    else:
        lines.append(
            f"  ppo:       entropy {metrics.entropy:.3f}, kl {metrics.approx_kl:.4f}, "
            f"clip {metrics.clip_fraction:.1%} (last update)"
        )
    return lines


def latch_line(config: RunConfig, stopped_after: int | None) -> str:
    """The summary's word on a run in which no host stabilized: within its episodes'
    epochs, or, for a run that stopped early, after the epochs its longest episode
    reached (`stopped_after`)."""
    stable = config.tracker.stabilization_epochs
    if stopped_after is None:
        when = f"within {counted(config.max_epochs, 'epoch')} ("
    else:
        when = (
            f"before the run stopped, after {counted(stopped_after, 'epoch')} "
            f"(of {config.max_epochs} per episode; "
        )
    return (
        f"  latch:     no host stabilized {when}the tracker needs "
        f"{counted(stable, 'stable epoch')} in a row after epoch 1, so epoch {stable + 1} "
        "at the earliest): no seed was germinated"
    )


def _any_host_stabilized(level: TelemetryLevel, by_type: Counter[str]) -> bool | None:
    """From the run's events: True once a host stabilized or a seed germinated, False
    if neither happened, None when the telemetry level left that untold."""
    if by_type[EventType.TAMIYO_INITIATED.value] or by_type[EventType.SEED_GERMINATED.value]:
        return True
    if level < minimum_level(EventType.TAMIYO_INITIATED):
        return None
    return False


def _policy_lines(trainer: VectorizedTrainer, tallies: list[RankTally]) -> list[str]:
    """What the controller did: its actions in the last batch, how the run's seeds ended
    by blueprint, and what to compare the accuracy with."""
    lines = []
    last = trainer.last_batch
    if last is not None and last.actions:
        total = sum(last.actions.values())
        shares = sorted(last.actions.items(), key=lambda item: (-item[1], item[0]))
        actions = ", ".join(f"{name} {count} ({count / total:.0%})" for name, count in shares)
        lines.append(f"  actions:   {actions} (last batch, {counted(total, 'decision')})")
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
        f"{counted(steps, 'host step')} ({counted(probes, 'isolation probe')}), "
        f"{counted(samples, 'memory sample')} "
        f"(peak RSS {peak.peak_fraction:.1%} of {peak.memory_limit})"
    )
