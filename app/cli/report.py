"""`esper report PATH [-o FILE]`: a recorded run's event log made into one self-contained
HTML page (`instrumentation.report`).

The report package, and plotly with it, is imported when the command runs, never when
the command line is built: the other commands do not pay for it, and without the
optional `report` extra only this command fails, with one line saying what to install.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.errors import UsageError
from app.interrupts import Terminated, announce_interrupt, raise_for
from app.plurals import counted

if TYPE_CHECKING:
    from instrumentation.report import ReportResult

_DESCRIPTION = (
    "Write a recorded run's event log as one HTML file that opens offline in a browser: "
    "accuracy and reward per batch, PPO health with its anomaly thresholds and the "
    "anomalies at their batch, each environment's seeds by stage, events by type, and the "
    "run's summary and configuration (from run.json beside the log). PATH is a run "
    "directory (telemetry/telemetry_.../) or a log file, read as `esper replay` reads it: "
    "rotated LOG.N files and every rank's log of a run of several processes included."
)


def add_report_command(commands: argparse._SubParsersAction[Any]) -> None:
    """The `report` command and its flags, on the parser's subcommands."""
    report = commands.add_parser(
        "report",
        help="write a recorded run's event log as a self-contained HTML report",
        description=_DESCRIPTION,
        epilog="exit status: 0 when the report was written (unreadable lines are counted "
        "in it and on stderr); 2 when the log is missing or unreadable, the directory "
        "holds no log, the output is one of the run's files (its logs, run.json) or "
        "cannot be written, or plotly is not installed.",
    )
    report.add_argument(
        "path",
        type=Path,
        metavar="PATH",
        help="a run directory, or an event log such as its events.jsonl",
    )
    report.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="where to write the report (default: report.html in the run directory; "
        "beside a log file LOG.jsonl, LOG-report.html)",
    )
    report.set_defaults(handler=report_command)


def report_command(args: argparse.Namespace) -> int:
    # Ctrl-C or SIGTERM unwinds, so that the half-written report is removed.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: raise_for(signum))
    try:
        result = _write(args.path, args.output)
    except (KeyboardInterrupt, Terminated) as interrupt:
        return announce_interrupt(interrupt, "while writing the report; nothing written")
    finally:
        signal.signal(signal.SIGTERM, previous)
    if result.unreadable:
        print(
            f"esper: skipped {counted(result.unreadable, 'unreadable line')} (first: "
            f"{result.first_unreadable}); the report counts them",
            file=sys.stderr,
        )
    print(result.describe())
    return 0


def _write(path: Path, output: Path | None) -> ReportResult:
    from instrumentation.report import ReportError, write_report

    try:
        return write_report(path, output)
    except ReportError as error:
        raise UsageError(str(error)) from None
