"""`esper report`: a recorded run's event log made into one self-contained HTML page with
interactive charts (accuracy and reward, PPO health with its anomalies, the seeds of each
environment, events by type) and the run's summary and configuration.

The log is read like `esper replay` reads it (rotated files, every rank of a run of
several processes, the original system's logs) and folded in one pass (`history.py`);
the page (`page.py`) draws it with plotly, an optional dependency (the `report` extra):
importing this package does not import plotly, `write_report` does, and says which extra
to install when it is missing.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.plurals import counted
from instrumentation.event_log import reason
from instrumentation.jsonl_reader import read_run_events
from instrumentation.report.history import HistoryFold, RunHistory, fold
from instrumentation.report.inputs import (
    RecordedRun,
    ReportError,
    Thresholds,
    check_output,
    default_output,
    read_recorded_run,
    report_log_sets,
    run_file,
    thresholds,
)

__all__ = ["ReportError", "ReportResult", "write_report"]

INSTALL_HINT = "pip install 'esper-otel[report]'"


@dataclass(frozen=True)
class ReportResult:
    """The report written: where, its size in bytes, the events it shows and the lines
    that could not be read (their number and the first one)."""

    path: Path
    size: int
    events: int
    unreadable: int
    first_unreadable: str | None

    def describe(self) -> str:
        """The report in a line: `<path> (4.9 MB, 1019 events)`. A report holds plotly.js,
        so it is never less than megabytes."""
        return f"{self.path} ({self.size / 1e6:.1f} MB, {counted(self.events, 'event')})"


def write_report(path: Path, output: Path | None = None) -> ReportResult:
    """Write the report of the run at path (a run directory or a log file) to output
    (default: `report.html` in the run directory, `<log stem>-report.html` beside a log
    file). ReportError, before the log is read, when plotly is missing, the log cannot
    be read, the output is one of the run's files or cannot be written; the output
    appears whole or not at all."""
    render = _renderer()
    log_sets = report_log_sets(path)
    target = output if output is not None else default_output(path)
    check_output(target, log_sets, run_file(path))
    record = read_recorded_run(path)
    staged: Path | None = None
    try:
        staged = _stage(target)
        folder = HistoryFold(record.episode_epochs())
        history = fold(read_run_events(log_sets, folder.on_error), folder)
        page = render(history, record, thresholds(record), path).encode("utf-8")
        _publish(page, staged, target)
    finally:
        if staged is not None:
            staged.unlink(missing_ok=True)
    first = history.unreadable_examples[0] if history.unreadable_examples else None
    return ReportResult(target, len(page), history.events, history.unreadable, first)


def _renderer() -> Callable[[RunHistory, RecordedRun, Thresholds, Path], str]:
    """The page's renderer, whose module imports plotly."""
    try:
        from instrumentation.report.page import render
    except ImportError as error:
        if error.name is None or error.name.split(".")[0] != "plotly":
            raise
        raise ReportError(f"esper report needs plotly: {INSTALL_HINT}") from None
    return render


def _stage(target: Path) -> Path:
    """An empty temporary file beside target, with the mode the umask gives a new file:
    made before the log is read, so that an unwritable output is found at once."""
    if target.is_dir():
        raise ReportError(f"cannot write report to {target}: it is a directory")
    staged = target.with_name(f".{target.name}.{secrets.token_hex(8)}.partial")
    try:
        os.close(os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
    except OSError as error:
        raise ReportError(f"cannot write report to {target}: {reason(error)}") from None
    return staged


def _publish(page: bytes, staged: Path, target: Path) -> None:
    """page written to the staged file and flushed to the disk, which then replaces
    target: a full disk fails here, never with a torn report in place."""
    try:
        with staged.open("wb") as file:
            file.write(page)
            file.flush()
            os.fsync(file.fileno())
        staged.replace(target)
    except OSError as error:
        raise ReportError(f"cannot write report to {target}: {reason(error)}") from None
