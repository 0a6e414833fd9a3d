"""The `esper` command line: `esper train` runs a morphogenetic training job."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from statistics import fmean
from typing import Any, NoReturn

import torch
from opentelemetry import trace
from tqdm import tqdm

from app.contracts import telemetry_names as names
from app.contracts.events import TelemetryLevel
from app.interrupts import StopRequest, Terminated, interrupted_before_start
from app.settings import render
from app.training.checkpoint import CheckpointError, load_checkpoint
from app.training.checkpoint_saver import CheckpointSaver, checkpoint_lines
from app.training.config import CONTROLLERS, RunConfig
from app.training.datasets import DATASETS, Dataset, DatasetError, load_dataset
from app.training.overrides import (
    FORMAT,
    Override,
    apply_parsed,
    config_table,
    parse_override,
    sections,
)
from app.training.progress import ProgressThresholds
from app.training.resume import check_resumable
from app.training.vectorized import VectorizedTrainer
from instrumentation.event_log import TelemetryDirError, log_loss_lines, start_event_log
from instrumentation.hub import TelemetryHub, installed
from instrumentation.jsonl_reader import LogLineError
from instrumentation.otel import (
    DEFAULT_SHUTDOWN_TIMEOUT_S,
    OpenTelemetrySession,
    TelemetryConfigError,
    configure_opentelemetry,
    current_span_ids,
)
from instrumentation.otel.summary import export_line
from instrumentation.replay import (
    LogReplayer,
    ReplayInputError,
    check_destination,
    check_readable,
    log_files,
    run_id_for,
)
from instrumentation.sinks import ConsoleSink, TelemetrySink

USAGE_ERROR = 2
# Training ran to its end (or its stop) but output it was asked to write is incomplete.
INCOMPLETE_OUTPUT = 3
tracer = trace.get_tracer("esper.cli")


class UsageError(Exception):
    """Bad input found before training starts; exits with code 2 and one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def _bounded(
    kind: Callable[[str], Any], low: float, name: str, high: float = math.inf
) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not math.isfinite(value) or not low <= value <= high:
            bounds = f"at least {low}" if high == math.inf else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"{name} must be {bounds}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="esper", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = commands.add_parser("train", help="train hosts and their seed controller")
    add = train.add_argument
    add("--controller", choices=CONTROLLERS, default="ppo")
    add("--recurrent", action="store_true", help="LSTM policy instead of feedforward")
    add("--envs", type=_bounded(int, 1, "--envs"), default=4, help="parallel environments")
    add("--episodes", type=_bounded(int, 1, "--episodes"), default=32, help="total episodes")
    add("--max-epochs", type=_bounded(int, 2, "--max-epochs"), default=25, help="per episode")
    add("--dataset", choices=DATASETS, default="digits")
    add("--data-dir", type=Path, help="where cifar10 lives; nothing is downloaded")
    add("--seed", type=_bounded(int, 0, "--seed", high=2**32 - 1), default=0)
    add("--device", default="cpu", help="cpu, cuda or cuda:N")
    add("--threads", type=_bounded(int, 1, "--threads"), default=1, help="torch CPU threads")
    add("--telemetry-dir", type=Path, default=Path("telemetry"))
    add(
        "--telemetry-level",
        choices=[level.name.lower() for level in TelemetryLevel],
        default="normal",
    )
    add(
        "--telemetry-max-bytes",
        type=_bounded(int, 1024, "--telemetry-max-bytes"),
        help="rotate events.jsonl to events.jsonl.1, .2, ... before it grows past this size",
    )
    add(
        "--telemetry-keep",
        type=_bounded(int, 1, "--telemetry-keep"),
        default=5,
        help="rotated files kept; older ones (the oldest events) are deleted",
    )
    add("--verbose", action="store_true", help="print every event to the console")
    add(
        "--plateau-threshold",
        type=_bounded(float, 0, "--plateau-threshold"),
        help=f"progress.plateau (default {ProgressThresholds().plateau})",
    )
    add(
        "--improvement-threshold",
        type=_bounded(float, 0, "--improvement-threshold"),
        help=f"progress.improvement (default {ProgressThresholds().improvement})",
    )
    add(
        "--set",
        action="append",
        dest="overrides",
        metavar=FORMAT,
        help="set any field of a config section, e.g. health.grad_exploding=1e4 or "
        "health.epoch_time_budget_s=none; repeatable, the last value for a key wins, and "
        "--set wins over a flag for the same field (--plateau-threshold, "
        "--improvement-threshold); --show-config lists every key",
    )
    add(
        "--show-config",
        action="store_true",
        help="print the configuration these flags resolve to, one KEY = VALUE a line, and "
        "exit without training or writing anything",
    )
    add(
        "--prometheus-port",
        type=_bounded(int, 0, "--prometheus-port", high=65535),
        help="serve /metrics on this port (0 picks a free one); no collector needed",
    )
    add("--save", type=Path, help="write a checkpoint here after every batch")
    add("--resume", type=Path, help="continue from this checkpoint")
    add("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(handler=train_command)
    replay = commands.add_parser(
        "replay",
        help="send a recorded event log to the OTLP endpoint, with its original timestamps",
        description="Send EVENTS.jsonl (and its rotated EVENTS.jsonl.N beside it, oldest "
        "first) to the OTLP endpoint of the OTEL_* variables as traces and metrics, "
        "to look at an old run in Jaeger.",
        epilog="exit status: 0 when every event was replayed and exported; 1 when corrupt "
        "lines were skipped (each is reported) or the export did not finish in time; "
        "2 when the log is missing or unreadable or no exporter is configured.",
    )
    replay.add_argument("events", type=Path, metavar="EVENTS.jsonl")
    replay.add_argument(
        "--run-id",
        help="tag the traces with this run id (default: run.json beside the log, else the "
        "run directory's or the file's name)",
    )
    replay.set_defaults(handler=replay_command)
    return parser


def run_config(args: argparse.Namespace) -> RunConfig:
    """The run's configuration: the dedicated flags, then each --set in order, so that
    --set wins for a field that a flag also sets. The progress flags are overrides of
    their own, applied with the --set ones for the same section, so that
    `--plateau-threshold 3 --set progress.improvement=5` is checked as a whole."""
    config = RunConfig(
        controller=args.controller,
        recurrent=args.recurrent,
        envs=args.envs,
        episodes=args.episodes,
        max_epochs=args.max_epochs,
        dataset=args.dataset,
        data_dir=args.data_dir,
        seed=args.seed,
        device=args.device,
        telemetry_level=TelemetryLevel[args.telemetry_level.upper()],
    )
    flags = [
        Override("progress", field, value, f"{flag} {value}")
        for field, flag, value in (
            ("plateau", "--plateau-threshold", args.plateau_threshold),
            ("improvement", "--improvement-threshold", args.improvement_threshold),
        )
        if value is not None
    ]
    sets = [parse_override(config, text) for text in args.overrides or ()]
    return apply_parsed(config, [*flags, *sets])


def show_config(config: RunConfig) -> str:
    """Every top-level field and every `section.field`, one `KEY = VALUE` a line; the
    values are written as `--set` takes them."""
    top = [
        (item.name, render(getattr(config, item.name)))
        for item in fields(config)
        if item.name not in sections(config)
    ]
    return "\n".join(f"{key} = {value}" for key, value in [*top, *config_table(config)])


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except UsageError as error:
        print(f"esper: error: {error}", file=sys.stderr)
        return USAGE_ERROR


def _check_device(device: str) -> None:
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device {device!r} is not a torch device") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine")
    try:
        torch.empty(0, device=parsed)
    except (RuntimeError, AssertionError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UsageError(f"--device {device} cannot be used: {reason}") from None


def _check_save_path(path: Path) -> None:
    """Fail now rather than lose the first batch to an unwritable checkpoint path."""
    if path.is_dir():
        raise UsageError(f"--save {path} is a directory; give a file name")
    parent = path.parent
    if parent.exists() and not (parent.is_dir() and os.access(parent, os.W_OK)):
        raise UsageError(f"--save {path}: cannot write in {parent}")


def _resolve(args: argparse.Namespace) -> RunConfig:
    """The configuration, or a UsageError for flags and overrides that do not make one."""
    if args.recurrent and args.controller != "ppo":
        raise UsageError("--recurrent applies to the ppo controller only")
    try:
        return run_config(args)
    except ValueError as error:  # OverrideError included
        raise UsageError(str(error)) from None


def _prepare(args: argparse.Namespace) -> tuple[RunConfig, Dataset, dict[str, Any] | None]:
    """Everything that can fail on bad input, done before any work starts."""
    config = _resolve(args)
    _check_device(config.device)
    if args.save:
        _check_save_path(args.save)
    try:
        dataset = load_dataset(config.dataset, config.data_dir, config.seed)
        checkpoint = load_checkpoint(args.resume) if args.resume else None
        if checkpoint is not None:
            check_resumable(args.resume, checkpoint, config)
    except (DatasetError, CheckpointError) as error:
        raise UsageError(str(error)) from None
    return config, dataset, checkpoint


def train_command(args: argparse.Namespace) -> int:
    if args.show_config:
        # The configuration alone: no device, dataset or checkpoint is touched.
        print(show_config(_resolve(args)))
        return 0
    stop = StopRequest()
    with stop.installed():
        try:
            return _start_and_run(args, stop)
        except (KeyboardInterrupt, Terminated) as interrupt:
            # Training catches its own: one that gets here came before it started.
            return interrupted_before_start(interrupt)


def _start_and_run(args: argparse.Namespace, stop: StopRequest) -> int:
    config, dataset, checkpoint = _prepare(args)
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
        stop.wait_for_export(lambda: otel.shutdown(DEFAULT_SHUTDOWN_TIMEOUT_S))


def replay_command(args: argparse.Namespace) -> int:
    try:
        paths = log_files(args.events)
        check_readable(paths)
        check_destination()
        run_id = args.run_id or run_id_for(args.events)
        otel = configure_opentelemetry(run_id, install_globally=False)
        replayer = LogReplayer(otel, run_id, len(paths), _report_skipped_line)
    except (ReplayInputError, TelemetryConfigError) as error:
        raise UsageError(str(error)) from None
    status = "completed"
    try:
        replayer.replay(paths)
    except KeyboardInterrupt:
        status = "interrupted (Ctrl-C)"
    finally:
        finished = otel.shutdown(DEFAULT_SHUTDOWN_TIMEOUT_S)
    print(replayer.summary(status, finished, DEFAULT_SHUTDOWN_TIMEOUT_S), file=sys.stderr)
    return 130 if status != "completed" else replayer.exit_code(finished)


def _report_skipped_line(error: LogLineError) -> None:
    print(f"esper: skipped {error}", file=sys.stderr)


def _report_line(line: str) -> None:
    """A line for the person watching, below the progress bar rather than through it."""
    tqdm.write(line, file=sys.stderr)


def _run(
    args: argparse.Namespace,
    config: RunConfig,
    dataset: Dataset,
    checkpoint: dict[str, Any] | None,
    run_id: str,
    otel: OpenTelemetrySession,
    stop: StopRequest,
) -> int:
    trainer = _start(config, dataset, run_id)
    if checkpoint is not None:
        try:
            trainer.load_state_dict(checkpoint)
        except CheckpointError as error:
            raise UsageError(f"checkpoint {args.resume}: {error}") from None
    # Before anything is written: from here a signal ends the run with its summary.
    stop.start_training()
    try:
        jsonl = start_event_log(
            args.telemetry_dir,
            {"run_id": run_id, "config": asdict(config)},
            context_provider=current_span_ids,
            max_bytes=args.telemetry_max_bytes,
            keep=args.telemetry_keep,
        )
    except TelemetryDirError as error:
        raise UsageError(str(error)) from None
    # The log first: an interrupt landing between two sinks must not leave out of the log
    # an event the console already showed.
    sinks: list[TelemetrySink] = [jsonl, ConsoleSink(verbose=args.verbose)]
    if otel.sink is not None:
        sinks.append(otel.sink)
    hub = TelemetryHub(sinks)
    otel.report_sink_errors(hub)
    if otel.prometheus_port is not None:
        print(f"esper: metrics at http://localhost:{otel.prometheus_port}/metrics", file=sys.stderr)
    saver = CheckpointSaver(args.save, _report_line) if args.save else None
    started = time.perf_counter()
    status, exit_code = "failed", 1
    try:
        with installed(hub):
            try:
                _train(trainer, args, stop, saver)
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
        stop.wait_for_export(lambda: otel.shutdown(DEFAULT_SHUTDOWN_TIMEOUT_S))
        _print_summary(status, run_id, jsonl.path, hub, trainer, wall_s, saver, stop, otel)
    return stop.exit_code(exit_code)


def _start(config: RunConfig, dataset: Dataset, run_id: str) -> VectorizedTrainer:
    """Open and close the short `esper.run` span that every batch trace links to."""
    attributes = {names.RUN_ID: run_id, **_span_attributes(config)}
    with tracer.start_as_current_span(names.RUN_SPAN, attributes=attributes) as run_span:
        return VectorizedTrainer(config, dataset, run_id, run_span)


def _train(
    trainer: VectorizedTrainer,
    args: argparse.Namespace,
    stop: StopRequest,
    saver: CheckpointSaver | None,
) -> None:
    """Run the batches under a progress bar that moves every epoch (rate and ETA in
    episodes), saving a checkpoint after each batch when asked and stopping at an epoch
    boundary when `stop` was requested."""
    stop.raise_if_requested()
    with tqdm(
        total=trainer.config.episodes,
        initial=trainer.progress.episodes_completed,
        unit="episode",
        disable=args.no_progress,
        dynamic_ncols=True,
        bar_format="{l_bar}{bar}| {n:.3g}/{total} [{elapsed}<{remaining}, {rate_fmt}{postfix}]",
    ) as bar:

        def advance(episodes: float) -> None:
            bar.update(min(episodes, bar.total - bar.n))  # float steps must not overshoot
            stop.raise_if_requested()

        trainer.on_epoch = advance
        while not trainer.finished:
            last = trainer.run_batch()
            bar.n = last.episodes_completed  # exact again after the fractional steps
            bar.set_postfix(acc=f"{last.avg_accuracy:.1f}", reward=f"{last.avg_reward:.2f}")
            if saver is not None:
                saver.save(trainer.state_dict(), last.batch)


def _span_attributes(config: RunConfig) -> dict[str, str | int | float | bool]:
    flat: dict[str, str | int | float | bool] = {}
    for key, value in asdict(replace(config, data_dir=None)).items():
        if isinstance(value, dict):
            for inner, item in value.items():
                if isinstance(item, str | int | float | bool):
                    flat[f"{names.CONFIG_PREFIX}{key}.{inner}"] = item
        elif isinstance(value, str | int | float | bool):
            flat[f"{names.CONFIG_PREFIX}{key}"] = value
    return flat


def _print_summary(
    status: str,
    run_id: str,
    log_path: Path,
    hub: TelemetryHub,
    trainer: VectorizedTrainer,
    wall_s: float,
    saver: CheckpointSaver | None,
    stop: StopRequest,
    otel: OpenTelemetrySession,
) -> None:
    progress = trainer.progress
    lines = [f"esper: training {status} in {wall_s:.1f}s", f"  run id:    {run_id}"]
    if progress.accuracies:
        lines += [
            f"  episodes:  {progress.episodes_completed} in {progress.batches_completed} batches",
            f"  accuracy:  {progress.accuracies[-1]:.2f}% last batch, "
            f"{fmean(progress.accuracies):.2f}% rolling",
            f"  reward:    {progress.rewards[-1]:.3f} per episode, last batch",
        ]
    events = ", ".join(f"{t.value}={n}" for t, n in sorted(hub.events_by_type.items()))
    lines += [
        f"  events:    {hub.emitted} ({events})",
        f"  checks:    {_checks(trainer)}",
        f"  event log: {log_path}",
        export_line(otel),
    ]
    lines += log_loss_lines(hub.sinks)
    lines += stop.summary_lines()
    lines += checkpoint_lines(saver)
    errors = {name: count for name, count in hub.sink_errors.items() if count}
    if errors:
        lines.append(f"  sink errors: {errors}")
    print("\n".join(lines), file=sys.stderr)


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
