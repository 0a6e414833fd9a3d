"""The `esper` commands and their flags, each flag's value checked as it is parsed."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from app.cli.errors import USAGE_ERROR
from app.cli.replay import replay_command
from app.cli.train import train_command
from app.contracts.events import TelemetryLevel
from app.distributed.world import DEFAULT_TIMEOUT_S
from app.training.config import CONTROLLERS, RunConfig
from app.training.datasets import DATASETS
from app.training.overrides import FORMAT
from app.training.progress import ProgressThresholds

_DESCRIPTION = "The `esper` command line: `esper train` runs a morphogenetic training job."


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
    parser = _Parser(prog="esper", description=_DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = commands.add_parser("train", help="train hosts and their seed controller")
    add = train.add_argument
    add("--controller", choices=CONTROLLERS, default="ppo")
    add("--recurrent", action="store_true", help="LSTM policy instead of feedforward")
    add(
        "--envs",
        type=_bounded(int, 1, "--envs"),
        default=RunConfig.envs,
        help="parallel environments",
    )
    add(
        "--episodes",
        type=_bounded(int, 1, "--episodes"),
        default=RunConfig.episodes,
        help="total episodes",
    )
    add(
        "--max-epochs",
        type=_bounded(int, 2, "--max-epochs"),
        default=RunConfig.max_epochs,
        help="per episode",
    )
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
    add(
        "--rank-timeout",
        type=_bounded(float, 1, "--rank-timeout"),
        default=DEFAULT_TIMEOUT_S,
        help="under torchrun: seconds a process waits for the others at an exchange "
        f"(default {DEFAULT_TIMEOUT_S:g}) before it stops the run, saying which exchange; "
        "it must exceed how far a process can run ahead (start-up, a PPO update)",
    )
    add("--save", type=Path, help="write a checkpoint here after every batch")
    add("--resume", type=Path, help="continue from this checkpoint")
    add("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(handler=train_command)
    replay = commands.add_parser(
        "replay",
        help="send a recorded run's event log to the OTLP endpoint, with its original timestamps",
        description="Send a recorded run to the OTLP endpoint of the OTEL_* variables as "
        "traces and metrics, to look at an old run in Jaeger. PATH is a run directory "
        "(telemetry/telemetry_.../) or a log file; each log is read with its rotated "
        "LOG.N files beside it, oldest first. A run of several processes has one log per "
        "rank (events.jsonl, events-rank<N>.jsonl): its directory, or one of those logs, "
        "replays every rank, merged in timestamp order.",
        epilog="exit status: 0 when every event was replayed and exported; 1 when corrupt "
        "lines were skipped (each is reported) or the export did not finish in time; "
        "2 when a log is missing or unreadable, the directory holds no log, or no exporter "
        "is configured.",
    )
    replay.add_argument(
        "events",
        type=Path,
        metavar="PATH",
        help="a run directory, or an event log such as its events.jsonl",
    )
    replay.add_argument(
        "--run-id",
        help="tag the traces with this run id (default: the run's run.json, else the "
        "run directory's or the file's name)",
    )
    replay.set_defaults(handler=replay_command)
    return parser
