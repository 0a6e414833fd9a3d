"""`esper train`: start OpenTelemetry and the event log, run the batches, and end with a
summary and an exit code that say how the run went, whatever stopped it.

Under torchrun every process runs this command: the ranks agree on rank 0's run id and
run directory, each writes its own event log and exports its own telemetry, and rank 0
alone shows the progress bar and prints the summary of every rank.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from app.cli.config import resolve, show_config
from app.cli.errors import INCOMPLETE_OUTPUT, UsageError
from app.cli.progress import report_line, train_batches
from app.cli.run_span import start_trainer
from app.cli.startup import prepare
from app.cli.summary import FinishedRun, RankTally, print_summary, tally
from app.distributed.world import LostRankError, World, join, leave
from app.interrupts import StopRequest, Terminated, interrupted_before_start
from app.training.checkpoint import CheckpointError
from app.training.checkpoint_saver import CheckpointSaver
from app.training.config import RunConfig
from app.training.datasets import Dataset
from app.training.vectorized import VectorizedTrainer
from instrumentation.event_log import (
    TelemetryDirError,
    discard_event_log,
    join_event_log,
    start_event_log,
)
from instrumentation.hub import TelemetryHub, installed
from instrumentation.otel import (
    DEFAULT_SHUTDOWN_TIMEOUT_S,
    OpenTelemetrySession,
    TelemetryConfigError,
    configure_opentelemetry,
    current_span_ids,
)
from instrumentation.sinks import ConsoleSink, JsonlSink, TelemetrySink


def train_command(args: argparse.Namespace) -> int:
    if args.show_config:
        # The configuration alone: no device, dataset or checkpoint is touched.
        print(show_config(resolve(args)))
        return 0
    stop = StopRequest()
    with stop.installed():
        try:
            return _start_and_run(args, stop)
        except (KeyboardInterrupt, Terminated) as interrupt:
            # Training catches its own: one that gets here came before it started.
            return interrupted_before_start(interrupt)


def _start_and_run(args: argparse.Namespace, stop: StopRequest) -> int:
    config, dataset, checkpoint = prepare(args)
    torch.set_num_threads(args.threads)
    world = join(config.device, args.rank_timeout)
    try:
        _check_world(config, world)
        run_id = world.broadcast(uuid.uuid4().hex[:16], "agreeing on the run id")
        port = args.prometheus_port
        try:
            # Before the run starts, so that its esper.run span is recorded.
            otel = configure_opentelemetry(
                run_id,
                prometheus_port=port + world.local_rank if port else port,
                rank=world.rank if world.size > 1 else None,
            )
        except TelemetryConfigError as error:
            raise UsageError(str(error)) from None
        try:
            return _run(args, config, dataset, checkpoint, run_id, otel, stop, world)
        finally:
            _export(stop, otel)
    finally:
        leave(world)


def _check_world(config: RunConfig, world: World) -> None:
    """A run of several processes that cannot work, refused before any work starts."""
    if config.envs < world.size:
        raise UsageError(
            f"--envs {config.envs} is fewer than the {world.size} processes: "
            "each process steps at least one environment"
        )


def _export(stop: StopRequest, otel: OpenTelemetrySession) -> None:
    """Wait for the bounded export unless a signal cuts it short; what a cut-short export
    had not sent is then booked as lost, so the summary's counts are final."""
    stop.wait_for_export(lambda: otel.shutdown(DEFAULT_SHUTDOWN_TIMEOUT_S))
    if stop.cut_short_by is not None:
        otel.abandon_export()


def _run(
    args: argparse.Namespace,
    config: RunConfig,
    dataset: Dataset,
    checkpoint: dict[str, Any] | None,
    run_id: str,
    otel: OpenTelemetrySession,
    stop: StopRequest,
    world: World,
) -> int:
    if world.is_leader:
        trainer = start_trainer(config, dataset, run_id, world)
    else:
        trainer = VectorizedTrainer(config, dataset, run_id, world=world)
    if checkpoint is not None:
        try:
            trainer.load_state_dict(checkpoint)
        except CheckpointError as error:
            raise UsageError(f"checkpoint {args.resume}: {error}") from None
    jsonl = _open_event_log(args, config, run_id, world)
    try:
        console = ConsoleSink(verbose=args.verbose) if world.is_leader else None
        hub = _hub(jsonl, console, otel, world)
        saver = CheckpointSaver(args.save, report_line, world.is_leader) if args.save else None
    except BaseException:  # a start-up signal: a run that never started leaves nothing
        discard_event_log(jsonl)
        raise
    # From here a signal ends the run with its summary.
    stop.start_training()
    started = time.perf_counter()
    status, exit_code = "failed", 1
    try:
        with installed(hub):
            try:
                show_bar = world.is_leader and not args.no_progress
                train_batches(trainer, stop, saver, show_bar=show_bar)
            finally:
                stop.flushing()  # closing the hub writes out the log and the console whole
        incomplete = jsonl.dropped or (saver is not None and saver.last_failed)
        status, exit_code = "completed", INCOMPLETE_OUTPUT if incomplete else 0
    except KeyboardInterrupt:
        status, exit_code = "interrupted (Ctrl-C)", 130
    except Terminated:
        status, exit_code = "terminated (SIGTERM)", 143
    except LostRankError as error:
        status, exit_code = f"stopped: {error}", 1
    finally:
        wall_s = time.perf_counter() - started
        # Before the summary, which counts losses; a signal now cuts the wait short.
        _export(stop, otel)
        run = FinishedRun(status, run_id, wall_s, trainer, hub, jsonl.path, otel, stop, saver)
        _summarize(run, world)
    return stop.exit_code(exit_code)


def _summarize(run: FinishedRun, world: World) -> None:
    """Rank 0 prints the summary of every rank that can still send its tally."""
    tallies: list[RankTally | None] = [tally(run, world.rank)]
    try:
        tallies = world.gather(tallies[0], "sending the summary to rank 0")
    except LostRankError as error:
        print(f"esper: {error}", file=sys.stderr)
        if not world.is_leader:
            return
        tallies += [None] * (world.size - 1)
    if world.is_leader:
        found = [part for part in tallies if part is not None]
        lost = [rank for rank, part in enumerate(tallies) if part is None]
        print_summary(run, found, lost)


def _open_event_log(
    args: argparse.Namespace, config: RunConfig, run_id: str, world: World
) -> JsonlSink:
    """Rank 0 creates the run directory with its log and run.json, and the other ranks
    open their own logs in it."""
    options: dict[str, Any] = {
        "context_provider": current_span_ids,
        "max_bytes": args.telemetry_max_bytes,
        "keep": args.telemetry_keep,
    }
    try:
        if world.is_leader:
            record = {"run_id": run_id, "processes": world.size, "config": asdict(config)}
            rank = 0 if world.size > 1 else None
            jsonl = start_event_log(args.telemetry_dir, record, rank=rank, **options)
            world.broadcast(jsonl.path.parent.name, "sending the run directory")
            return jsonl
        name = world.broadcast("", "receiving the run directory")
        return join_event_log(Path(args.telemetry_dir) / name, world.rank, **options)
    except TelemetryDirError as error:
        raise UsageError(str(error)) from None


def _hub(
    jsonl: JsonlSink, console: ConsoleSink | None, otel: OpenTelemetrySession, world: World
) -> TelemetryHub:
    """The hub over every sink of the process. The log first: an interrupt landing
    between two sinks must not leave out of the log an event the console already showed."""
    sinks: list[TelemetrySink] = [jsonl] if console is None else [jsonl, console]
    if otel.sink is not None:
        sinks.append(otel.sink)
    hub = TelemetryHub(sinks)
    otel.report_sink_errors(hub)
    endpoint = (socket.gethostname(), otel.prometheus_port)
    endpoints = world.gather(endpoint, "sending the metrics endpoints to rank 0")
    for rank, (host, port) in enumerate(endpoints):
        if port is not None:
            where = "localhost" if host == endpoints[0][0] else host
            of_rank = f" (rank {rank})" if world.size > 1 else ""
            print(f"esper: metrics at http://{where}:{port}/metrics{of_rank}", file=sys.stderr)
    return hub
