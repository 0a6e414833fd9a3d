"""The `esper` commands and their flags, each flag's value checked as it is parsed.

Nothing here loads torch or the OpenTelemetry SDK: the handlers import theirs when they
run (lazy.py), and the defaults shown in the help come from light modules.

`args.given` names the options the command line gave (by dest): a resumed run takes the
checkpoint's value for a flag that was not given, and refuses one given with another.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

from app.cli.errors import USAGE_ERROR
from app.cli.lazy import REPLAY, TRAIN
from app.cli.report import add_report_command
from app.contracts.events import TelemetryLevel
from app.distributed import DEFAULT_TIMEOUT_S
from app.training.progress import ProgressThresholds
from app.training.run_basics import CONTROLLERS, DATASETS, RunBasics

_DESCRIPTION = (
    "The `esper` command line: `esper train` runs a morphogenetic training job, `esper "
    "replay` sends a recorded run's event log to an OpenTelemetry endpoint, and `esper "
    "report` draws it as an HTML page."
)
DISTRIBUTION = "esper-otel"


class _Parser(argparse.ArgumentParser):
    """Exits 2 on bad input, and records which options were given (`args.given`)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        # An option left at the sentinel was not given; its default is filled in after.
        # Options whose default is None need no sentinel: a given value is never None.
        unset = object()
        namespace = namespace if namespace is not None else argparse.Namespace()
        tracked = [
            action
            for action in self._actions
            if action.option_strings and action.default not in (None, argparse.SUPPRESS)
        ]
        # The sentinel stands where argparse would find the default, which is right only
        # for options that neither convert a string default (argparse runs it through
        # `type` only when it finds it there) nor build on it (append, extend, count).
        assert not any(_builds_on_default(action) for action in tracked)
        for action in tracked:
            setattr(namespace, action.dest, unset)
        parsed, extras = super().parse_known_args(args, namespace)
        given = set(getattr(parsed, "given", ()))  # a subcommand's, parsed inside this call
        for action in self._actions:
            if not action.option_strings or action.default is argparse.SUPPRESS:
                continue
            value = getattr(parsed, action.dest, None)
            if value is unset:
                setattr(parsed, action.dest, action.default)
            elif value is not None:
                given.add(action.dest)
        parsed.given = frozenset(given)
        return parsed, extras


def _builds_on_default(action: argparse.Action) -> bool:
    accumulates = (argparse._AppendAction, argparse._ExtendAction, argparse._CountAction)
    return isinstance(action, accumulates) or (
        isinstance(action.default, str) and action.type is not None
    )


class _DefaultsShown(argparse.HelpFormatter):
    """Each option's help ends with its default, unless it says it already (an option
    that is off by default says what off means) or the option is a flag."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.nargs == 0 or "(default" in text or action.default in (None, argparse.SUPPRESS):
            return text
        return f"{text} (default: {shown_default(action.default)})"


def shown_default(value: object) -> str:
    """A default as the help shows it: 300, not 300.0."""
    return f"{value:g}" if isinstance(value, float) else str(value)


class _Version(argparse.Action):
    """`--version`: the installed distribution's version, looked up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> NoReturn:
        try:
            version = metadata.version(DISTRIBUTION)
        except metadata.PackageNotFoundError:
            version = f"unknown ({DISTRIBUTION} is not installed)"
        print(f"esper {version}", file=sys.stdout)
        parser.exit(0)


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
    parser.add_argument("--version", action=_Version, help="print esper's version and exit")
    commands = parser.add_subparsers(
        dest="command", title="commands", metavar="COMMAND", parser_class=_Parser
    )
    _add_train(commands)
    _add_replay(commands)
    add_report_command(commands)
    return parser


def _add_train(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        help="train hosts and their seed controller",
        description="Train hosts and the controller that grows seeds in them.",
        formatter_class=_DefaultsShown,
    )
    _add_run_options(train)
    _add_telemetry_options(train)
    _add_threshold_options(train)
    _add_process_options(train)
    _add_checkpoint_options(train)
    add = train.add_argument
    add(
        "--report",
        action="store_true",
        help="when the run ends, however it ends, write its HTML report (esper report) "
        "to report.html in the run directory; needs plotly (the report extra)",
    )
    add("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(handler=TRAIN)


def _add_run_options(train: argparse.ArgumentParser) -> None:
    """What the run trains, and on what."""
    add = train.add_argument
    add("--controller", choices=CONTROLLERS, default=RunBasics.controller, help="who grows seeds")
    add("--recurrent", action="store_true", help="LSTM policy instead of feedforward")
    add(
        "--envs",
        type=_bounded(int, 1, "--envs"),
        default=RunBasics.envs,
        metavar="N",
        help="environments stepped in lockstep; one PPO update per batch of N episodes",
    )
    add(
        "--episodes",
        type=_bounded(int, 1, "--episodes"),
        default=RunBasics.episodes,
        metavar="N",
        help="total episodes across environments; with --resume, the new total",
    )
    add(
        "--max-epochs",
        type=_bounded(int, 2, "--max-epochs"),
        default=RunBasics.max_epochs,
        metavar="N",
        help="host epochs per episode",
    )
    add(
        "--dataset",
        choices=DATASETS,
        default=RunBasics.dataset,
        help="what the hosts learn; synthetic is tiny and fast, for tests",
    )
    add(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="where cifar10 lives, for --dataset cifar10 only; nothing is downloaded "
        "(default: none)",
    )
    add(
        "--seed",
        type=_bounded(int, 0, "--seed", high=2**32 - 1),
        default=RunBasics.seed,
        metavar="N",
        help="the same seed gives the same results on the CPU",
    )
    add("--device", default=RunBasics.device, metavar="DEVICE", help="cpu, cuda or cuda:N")
    add(
        "--threads",
        type=_bounded(int, 1, "--threads"),
        default=1,
        metavar="N",
        help="torch CPU threads",
    )


def _add_telemetry_options(train: argparse.ArgumentParser) -> None:
    add = train.add_argument
    add(
        "--telemetry-dir",
        type=Path,
        default=Path("telemetry"),
        metavar="DIR",
        help="where the run's timestamped directory is created",
    )
    add(
        "--telemetry-level",
        choices=[level.name.lower() for level in TelemetryLevel],
        default=RunBasics.telemetry_level.name.lower(),
        help="how much the run reports: off, or minimal, normal and debug, each adding "
        "to the one before",
    )
    add(
        "--telemetry-max-bytes",
        type=_bounded(int, 1024, "--telemetry-max-bytes"),
        metavar="N",
        help="rotate events.jsonl to events.jsonl.1, .2, ... before it grows past this size "
        "(default: off, one file)",
    )
    add(
        "--telemetry-keep",
        type=_bounded(int, 1, "--telemetry-keep"),
        default=5,
        metavar="K",
        help="rotated files kept; older ones (the oldest events) are deleted",
    )
    add("--verbose", action="store_true", help="print every event to the console")


def _add_threshold_options(train: argparse.ArgumentParser) -> None:
    # No argparse default: a --set for the same field must win over the flag's default.
    thresholds = ProgressThresholds()
    add = train.add_argument
    add(
        "--plateau-threshold",
        type=_bounded(float, 0, "--plateau-threshold"),
        metavar="PP",
        help=f"progress.plateau (default: {shown_default(thresholds.plateau)})",
    )
    add(
        "--improvement-threshold",
        type=_bounded(float, 0, "--improvement-threshold"),
        metavar="PP",
        help=f"progress.improvement (default: {shown_default(thresholds.improvement)})",
    )
    add(
        "--set",
        action="append",
        dest="overrides",
        metavar="SECTION.FIELD=VALUE",
        help="set any field of a config section, e.g. health.grad_exploding=1e4 or "
        "health.epoch_time_budget_s=none; repeatable, the last value for a key wins, and "
        "--set wins over a flag for the same field (--plateau-threshold, "
        "--improvement-threshold); --show-config lists every key (default: none)",
    )
    add(
        "--show-config",
        action="store_true",
        help="print the configuration these flags resolve to (with --resume, the "
        "checkpoint's where a flag is not given), one KEY = VALUE a line, and exit without "
        "training or writing anything",
    )


def _add_process_options(train: argparse.ArgumentParser) -> None:
    """The metrics endpoint, and the processes of a run under torchrun."""
    add = train.add_argument
    add(
        "--prometheus-port",
        type=_bounded(int, 0, "--prometheus-port", high=65535),
        metavar="P",
        help="serve /metrics on this port (0 picks a free one); no collector needed (default: off)",
    )
    add(
        "--rank-timeout",
        type=_bounded(float, 1, "--rank-timeout"),
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help="under torchrun: seconds a process waits for the others at an exchange "
        "before it stops the run, saying which exchange; it must exceed how far a process "
        "can run ahead (start-up, a PPO update)",
    )


def _add_checkpoint_options(train: argparse.ArgumentParser) -> None:
    add = train.add_argument
    add(
        "--save",
        type=Path,
        metavar="FILE",
        help="write a checkpoint here after every batch (default: off)",
    )
    add(
        "--resume",
        type=Path,
        metavar="FILE",
        help="continue the run of this checkpoint, with its configuration for every flag "
        "not given; --episodes is the new total, and --controller, --recurrent, --envs, "
        "--dataset and --max-epochs must match the checkpoint (default: off, a fresh run)",
    )


def _add_replay(commands: Any) -> None:
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
    replay.set_defaults(handler=REPLAY)
