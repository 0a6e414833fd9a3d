"""What `esper replay PATH` reads, and where it sends it, checked before anything is
exported: a problem here is one line and exit status 2, with nothing replayed.

PATH is a run directory or a log file (`jsonl_reader.run_log_sets`): a run directory, or a
rank's log (`events.jsonl`, `events-rank<N>.jsonl`) beside other ranks' logs, stands for
every rank's log set of the run; any other file for itself. Each set includes its rotated
files, and every file must be a readable regular file. The run id comes from the run's
`run.json`, else from the names on the path (`run_id_for`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from instrumentation.event_log import RUN_FILE_NAME
from instrumentation.jsonl_reader import NoLogError, log_rank, open_log, run_log_sets
from instrumentation.otel.environment import Signal, SignalExport, sdk_disabled

_log = logging.getLogger(__name__)


class ReplayInputError(Exception):
    """The log cannot be read, or there is nowhere to send it; nothing was replayed."""


def replay_log_sets(path: Path) -> list[list[Path]]:
    """The log sets `esper replay PATH` reads, in rank order, each oldest file first, all
    checked to be readable (`check_readable`)."""
    try:
        log_sets = run_log_sets(path)
    except NoLogError as error:
        raise ReplayInputError(str(error)) from None
    except OSError as error:
        reason = error.strerror or str(error)
        directory = error.filename or path
        raise ReplayInputError(f"cannot read run directory {directory}: {reason}") from None
    check_readable(file for files in log_sets for file in files)
    return log_sets


def check_readable(paths: Iterable[Path]) -> None:
    """Fail before any export if one of the files is missing, cannot be opened, or is
    not a regular file (a FIFO, a device such as /dev/zero, a directory)."""
    for path in paths:
        try:
            with open_log(path):
                pass
        except OSError as error:
            reason = error.strerror or str(error)
            raise ReplayInputError(f"cannot read event log {path}: {reason}") from None


def check_destination() -> None:
    """Fail when no exporter is configured: a replay to nowhere would look like success."""
    if sdk_disabled():
        raise ReplayInputError("OTEL_SDK_DISABLED=true: nothing to replay to")
    signals: tuple[Signal, ...] = ("traces", "metrics", "logs")
    if not any(SignalExport.from_environment(signal).exporters for signal in signals):
        raise ReplayInputError(
            "no exporter configured: set OTEL_EXPORTER_OTLP_ENDPOINT "
            "(or OTEL_TRACES_EXPORTER=console, OTEL_LOGS_EXPORTER=console)"
        )


def run_id_for(path: Path) -> str:
    """The run id of a run directory or a log: from the run's `run.json` (written by
    `esper train`), else the run directory's name for a directory or a rank's log
    (`events.jsonl`, `events-rank<N>.jsonl`), else the file's stem, so that replaying the
    same run twice gives the same id."""
    directory = path if path.is_dir() else path.parent
    recorded = _recorded_run_id(directory / RUN_FILE_NAME)
    if recorded is not None:
        return recorded
    if directory is path or log_rank(path.name) is not None:
        return directory.resolve().name
    return path.stem


def _recorded_run_id(run_file: Path) -> str | None:
    """The run id in run_file; None, with a warning when the file is there, without one."""
    if not run_file.is_file():
        return None
    try:
        run_id = json.loads(run_file.read_text(encoding="utf-8")).get("run_id")
    except (OSError, ValueError, AttributeError) as error:
        _log.warning("ignoring %s: %s", run_file, error)
        return None
    if isinstance(run_id, str) and run_id:
        return run_id
    _log.warning("ignoring %s: no run_id string in it", run_file)
    return None
