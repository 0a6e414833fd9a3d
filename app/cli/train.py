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
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from app.cli.config import resolve, show_config
from app.cli.errors import INCOMPLETE_OUTPUT, UsageError
from app.cli.progress import report_line, train_batches
from app.cli.resume import load_resumed
from app.cli.run_record import Ending, started_record, write_ended_record
from app.cli.run_span import start_trainer
from app.cli.startup import Prepared, prepare
from app.cli.summary import FinishedRun, RankTally, events_by_type, print_summary, tally
from app.cli.where_to_look import RunWindow
from app.distributed.world import LostRankError, World, join, leave
from app.interrupts import StopRequest, Terminated, interrupted_before_start, verb_of
from app.training.checkpoint import CheckpointError
from app.training.checkpoint_config import checkpoint_identity
from app.training.checkpoint_saver import CheckpointSaver
from app.training.config import RunConfig
from app.training.vectorized import VectorizedTrainer
from instrumentation.event_log import (
    RunRecord,
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
from instrumentation.otel.console_warnings import warnings_below_the_bar
from instrumentation.report import ReportError, write_report
from instrumentation.sinks import ConsoleSink, JsonlSink, TelemetrySink


@warnings_below_the_bar
def train_command(args: argparse.Namespace) -> int:
    if args.show_config:
        # The configuration alone: no device or dataset is touched, and a checkpoint to
        # resume is only read.
        print(show_config(resolve(args, load_resumed(args.resume) if args.resume else None)))
        return 0
    stop = StopRequest()
    with stop.installed():
        try:
            return _start_and_run(args, stop)
        except (KeyboardInterrupt, Terminated) as interrupt:
            # Training catches its own: one that gets here came before it started.
            return interrupted_before_start(interrupt)


def _start_and_run(args: argparse.Namespace, stop: StopRequest) -> int:
    prepared = prepare(args)
    config = prepared.config
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
            return _run(args, prepared, run_id, otel, stop, world)
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
    prepared: Prepared,
    run_id: str,
    otel: OpenTelemetrySession,
    stop: StopRequest,
    world: World,
) -> int:
    config, dataset, resumed = prepared.config, prepared.dataset, prepared.resumed
    began_s = time.time()  # before the run's esper.run span opens
    if world.is_leader:
        trainer = start_trainer(config, dataset, run_id, world)
    else:
        trainer = VectorizedTrainer(config, dataset, run_id, world=world)
    if resumed is not None:
        try:
            trainer.load_state_dict(resumed.state)
        except CheckpointError as error:
            raise UsageError(f"checkpoint {resumed.path}: {error}") from None
    record = started_record(run_id, world.size, config, resumed) if world.is_leader else None
    jsonl = _open_event_log(args, record, world)
    try:
        console = ConsoleSink(verbose=args.verbose) if world.is_leader else None
        hub = _hub(jsonl, console, otel, world)
        saver = (
            CheckpointSaver(
                args.save, report_line, world.is_leader, checkpoint_identity(run_id, config)
            )
            if args.save
            else None
        )
    except BaseException:  # a start-up signal: a run that never started leaves nothing
        discard_event_log(jsonl)
        raise
    # From here a signal ends the run with its summary.
    stop.start_training()
    started = time.perf_counter()
    ending = Ending("failed", 1)
    try:
        with installed(hub):
            try:
                show_bar = world.is_leader and not args.no_progress
                train_batches(trainer, stop, saver, show_bar=show_bar)
            finally:
                stop.flushing()  # closing the hub writes out the log and the console whole
        incomplete = jsonl.dropped or (saver is not None and saver.last_failed)
        ending = Ending("completed", INCOMPLETE_OUTPUT if incomplete else 0)
    except KeyboardInterrupt:
        ending = Ending("interrupted", 130, "Ctrl-C")
    except Terminated:
        ending = Ending("terminated", 143, "SIGTERM")
    except LostRankError as error:
        ending = Ending("stopped", 1, str(error))
    except Exception as error:
        ending = Ending("failed", 1, f"{type(error).__name__}: {error}")
        raise
    finally:
        wall_s = time.perf_counter() - started
        window = RunWindow(began_s, time.time())
        # Before the summary, which counts losses; a signal now cuts the wait short.
        _export(stop, otel)
        run = FinishedRun(
            status=ending.summary_status,
            run_id=run_id,
            wall_s=wall_s,
            window=window,
            trainer=trainer,
            hub=hub,
            log_path=jsonl.path,
            otel=otel,
            stop=stop,
            saver=saver,
        )
        exit_code = _summarize(run, world, record, ending, write_html=args.report)
    return stop.exit_code(exit_code)


def _summarize(
    run: FinishedRun, world: World, record: RunRecord | None, ending: Ending, write_html: bool
) -> int:
    """Rank 0 writes how the run ended over run.json, with the events of every rank that
    can still send its tally, then the HTML report when `write_html`, and prints their
    summary; the exit code."""
    tallies: list[RankTally | None] = [tally(run, world.rank)]
    try:
        tallies = world.gather(tallies[0], "sending the summary to rank 0")
    except LostRankError as error:
        print(f"esper: {error}", file=sys.stderr)
        if not world.is_leader:
            return ending.exit_code
        tallies += [None] * (world.size - 1)
    if record is None:
        return ending.exit_code
    found = [part for part in tallies if part is not None]
    lost = [rank for rank, part in enumerate(tallies) if part is None]
    run_dir = run.log_path.parent
    events = events_by_type(found)
    exit_code = write_ended_record(run_dir, record, ending, run.trainer.progress, events)
    if write_html:
        written = _write_report(run_dir, run.stop)
        if written is None and exit_code == 0:
            exit_code = INCOMPLETE_OUTPUT
        run = replace(run, report=written)
    print_summary(run, found, lost)
    return exit_code


def _write_report(run_dir: Path, stop: StopRequest) -> str | None:
    """The run's HTML report written in its directory: its path, size and events, or None after
    one line saying why it was not (the summary then gives the command that writes it).
    A signal stops it (`StopRequest.reporting`); whatever stops it leaves no file."""
    try:
        with stop.reporting():
            print("esper: writing the report (Ctrl-C skips it)", file=sys.stderr)
            result = write_report(run_dir)
    except ReportError as error:
        print(f"esper: report not written: {error}", file=sys.stderr)
        return None
    except (KeyboardInterrupt, Terminated) as interrupt:
        print(f"esper: report not written: {verb_of(interrupt)}", file=sys.stderr)
        return None
    except Exception as error:  # a defect in the report must not cost the run its summary
        print(f"esper: report not written: {type(error).__name__}: {error}", file=sys.stderr)
        return None
    return result.describe()


def _open_event_log(args: argparse.Namespace, record: RunRecord | None, world: World) -> JsonlSink:
    """Rank 0 creates the run directory with its log and run.json (`record`, None on the
    other ranks), and the other ranks open their own logs in it."""
    options: dict[str, Any] = {
        "context_provider": current_span_ids,
        "max_bytes": args.telemetry_max_bytes,
        "keep": args.telemetry_keep,
    }
    try:
        if record is not None:
            rank = 0 if world.size > 1 else None
            jsonl = start_event_log(args.telemetry_dir, record.document(), rank=rank, **options)
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
