"""`esper train`: start OpenTelemetry and the event log, run the batches, and end with a
summary and an exit code that say how the run went, whatever stopped it."""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from dataclasses import asdict
from typing import Any

import torch

from app.cli.config import resolve, show_config
from app.cli.errors import INCOMPLETE_OUTPUT, UsageError
from app.cli.progress import report_line, train_batches
from app.cli.run_span import start_trainer
from app.cli.startup import prepare
from app.cli.summary import FinishedRun, print_summary
from app.interrupts import StopRequest, Terminated, interrupted_before_start
from app.training.checkpoint import CheckpointError
from app.training.checkpoint_saver import CheckpointSaver
from app.training.config import RunConfig
from app.training.datasets import Dataset
from instrumentation.event_log import TelemetryDirError, discard_event_log, start_event_log
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
    run_id = uuid.uuid4().hex[:16]
    try:
        # Before the run starts, so that its esper.run span is recorded.
        otel = configure_opentelemetry(run_id, prometheus_port=args.prometheus_port)
    except TelemetryConfigError as error:
        raise UsageError(str(error)) from None
    try:
        return _run(args, config, dataset, checkpoint, run_id, otel, stop)
    finally:
        _export(stop, otel)


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
) -> int:
    trainer = start_trainer(config, dataset, run_id)
    if checkpoint is not None:
        try:
            trainer.load_state_dict(checkpoint)
        except CheckpointError as error:
            raise UsageError(f"checkpoint {args.resume}: {error}") from None
    jsonl = _open_event_log(args, config, run_id)
    try:
        hub = _hub(jsonl, ConsoleSink(verbose=args.verbose), otel)
        saver = CheckpointSaver(args.save, report_line) if args.save else None
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
                train_batches(trainer, stop, saver, show_bar=not args.no_progress)
            finally:
                stop.flushing()  # closing the hub writes out the log and the console whole
        incomplete = jsonl.dropped or (saver is not None and saver.last_failed)
        status, exit_code = "completed", INCOMPLETE_OUTPUT if incomplete else 0
    except KeyboardInterrupt:
        status, exit_code = "interrupted (Ctrl-C)", 130
    except Terminated:
        status, exit_code = "terminated (SIGTERM)", 143
    finally:
        wall_s = time.perf_counter() - started
        # Before the summary, which counts losses; a signal now cuts the wait short.
        _export(stop, otel)
        print_summary(
            FinishedRun(status, run_id, wall_s, trainer, hub, jsonl.path, otel, stop, saver)
        )
    return stop.exit_code(exit_code)


def _open_event_log(args: argparse.Namespace, config: RunConfig, run_id: str) -> JsonlSink:
    try:
        return start_event_log(
            args.telemetry_dir,
            {"run_id": run_id, "config": asdict(config)},
            context_provider=current_span_ids,
            max_bytes=args.telemetry_max_bytes,
            keep=args.telemetry_keep,
        )
    except TelemetryDirError as error:
        raise UsageError(str(error)) from None


def _hub(jsonl: JsonlSink, console: ConsoleSink, otel: OpenTelemetrySession) -> TelemetryHub:
    """The hub over every sink of the run. The log first: an interrupt landing between two
    sinks must not leave out of the log an event the console already showed."""
    sinks: list[TelemetrySink] = [jsonl, console]
    if otel.sink is not None:
        sinks.append(otel.sink)
    hub = TelemetryHub(sinks)
    otel.report_sink_errors(hub)
    if otel.prometheus_port is not None:
        print(f"esper: metrics at http://localhost:{otel.prometheus_port}/metrics", file=sys.stderr)
    return hub
