"""What `esper report PATH` reads and where it writes, checked before any work: the log
sets of PATH (a run directory or a log file, as `esper replay` takes them), the run's
`run.json` when there is one, the anomaly thresholds to draw, and the output file, which
must be none of the files read.

A problem here is a `ReportError`: one line, and the command exits 2 having written
nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.rl.anomaly import AnomalyThresholds
from instrumentation.event_log import RUN_FILE_NAME, reason
from instrumentation.jsonl_reader import NoLogError, check_depth, open_log, run_log_sets
from instrumentation.report.values import finite, is_integer

REPORT_FILE_NAME = "report.html"
# The thresholds the PPO health charts draw, as AnomalyThresholds and run.json name them.
DRAWN_THRESHOLDS = ("ratio_explosion", "ratio_collapse", "value_collapse")


class ReportError(Exception):
    """The report cannot be made: a missing or unreadable log, an unwritable output, or
    no plotting library."""


def report_log_sets(path: Path) -> list[list[Path]]:
    """The log sets of path in rank order, each oldest file first, every file checked to
    be a readable regular file."""
    try:
        log_sets = run_log_sets(path)
    except NoLogError as error:
        raise ReportError(str(error)) from None
    except OSError as error:
        raise ReportError(f"cannot read run directory {path}: {reason(error)}") from None
    for file in (file for files in log_sets for file in files):
        try:
            with open_log(file):
                pass
        except OSError as error:
            raise ReportError(f"cannot read event log {file}: {reason(error)}") from None
    return log_sets


def default_output(path: Path) -> Path:
    """`report.html` in a run directory; beside a log file, `<its stem>-report.html`."""
    if path.is_dir():
        return path / REPORT_FILE_NAME
    return path.with_name(f"{path.stem}-report.html")


def run_file(path: Path) -> Path:
    """The `run.json` of the run that path (a run directory or a log in it) belongs to;
    beside the log itself when path is a link to it."""
    return (path if path.is_dir() else path.resolve().parent) / RUN_FILE_NAME


def check_output(target: Path, log_sets: list[list[Path]], record_file: Path) -> None:
    """ReportError when target is one of the files the report reads: the report would
    replace the run's own record of itself."""
    inputs = [(file, "event log") for files in log_sets for file in files]
    for file, role in [*inputs, (record_file, RUN_FILE_NAME)]:
        if _same_file(target, file):
            raise ReportError(f"{target} is the run's {role}; choose another --output")


def _same_file(target: Path, file: Path) -> bool:
    """The same path once links are resolved, or, when both exist, the same file (a hard
    link)."""
    if target.resolve() == file.resolve():
        return True
    try:
        return target.samefile(file)
    except OSError:  # either is missing: no file to lose
        return False


@dataclass(frozen=True)
class RecordedRun:
    """The run's `run.json` (empty when absent), and why it could not be read, if so."""

    values: dict[str, Any]
    problem: str | None = None

    @property
    def config(self) -> dict[str, Any]:
        config = self.values.get("config")
        return config if isinstance(config, dict) else {}

    def episode_epochs(self) -> int | None:
        """The configured epochs per episode, when run.json says."""
        epochs = self.config.get("max_epochs")
        return epochs if is_integer(epochs) else None


def read_recorded_run(path: Path) -> RecordedRun:
    """The `run.json` of the run that path (a run directory or a log in it) belongs to.

    Its nesting is checked before parsing, as the event log's lines are: the parser and
    the report's walks of the configuration are recursive.
    """
    record_file = run_file(path)
    if not record_file.is_file():
        return RecordedRun({})
    try:
        with open_log(record_file) as file:
            text = file.read().decode("utf-8")
        check_depth(text)
        values = json.loads(text)
    except (OSError, ValueError) as error:
        return RecordedRun({}, f"{record_file}: {error}")
    if not isinstance(values, dict):
        return RecordedRun({}, f"{record_file}: not a JSON object")
    return RecordedRun(values)


@dataclass(frozen=True)
class Thresholds:
    """The anomaly thresholds the PPO health charts draw (`limits`), and which of
    DRAWN_THRESHOLDS run.json gave (`recorded`); the others are AnomalyThresholds'
    defaults."""

    limits: AnomalyThresholds
    recorded: frozenset[str]


def thresholds(record: RecordedRun) -> Thresholds:
    """The run's own thresholds (run.json's `config.anomaly`), field by field where it
    has a finite number, else the code's defaults."""
    anomaly = record.config.get("anomaly")
    recorded = anomaly if isinstance(anomaly, dict) else {}
    taken: dict[str, Any] = {}
    for name in DRAWN_THRESHOLDS:
        value = finite(recorded.get(name))
        if value is not None:
            taken[name] = value
    return Thresholds(replace(AnomalyThresholds(), **taken), frozenset(taken))
