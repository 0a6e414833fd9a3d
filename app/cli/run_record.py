"""`run.json` as `esper train` writes it: the record of the run's start, and the record of
how it ended, which rank 0 writes over it whatever ended the run (docs/events.md)."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from app.cli.errors import INCOMPLETE_OUTPUT
from app.cli.resume import Resumed
from app.training.checkpoint_config import config_document
from app.training.config import RunConfig
from app.training.vectorized import Progress
from instrumentation.event_log import RUN_FILE_NAME, RunRecord, reason, rewrite_run_file


@dataclass(frozen=True)
class Ending:
    """How a run ended: run.json's `status` and `status_reason`, and the exit code."""

    status: str
    exit_code: int
    reason: str | None = None

    @property
    def summary_status(self) -> str:
        """As the summary's first line says it: "interrupted (Ctrl-C)", "stopped: <why>";
        a failure's reason is the traceback that follows the summary."""
        if self.reason is None or self.status == "failed":
            return self.status
        if self.status == "stopped":
            return f"stopped: {self.reason}"
        return f"{self.status} ({self.reason})"


def started_record(
    run_id: str, processes: int, config: RunConfig, resumed: Resumed | None
) -> RunRecord:
    """The record of a run that starts now."""
    return RunRecord(
        run_id=run_id,
        processes=processes,
        started_at=_now(),
        telemetry_level=config.telemetry_level.name.lower(),
        resumed_from=None if resumed is None else resumed.record(),
        config=config_document(config),
    )


def write_ended_record(
    run_dir: Path,
    record: RunRecord,
    ending: Ending,
    progress: Progress,
    events_by_type: Counter[str],
) -> int:
    """Write over run.json the record of how the run ended; the run's exit code. A
    failure to write it is one line on stderr, and makes a completed run's exit code 3:
    the output it was asked for is incomplete."""
    ended = replace(
        record,
        status=ending.status,
        status_reason=ending.reason,
        ended_at=_now(),
        final_accuracy=progress.accuracies[-1] if progress.accuracies else None,
        final_reward=progress.rewards[-1] if progress.rewards else None,
        events_by_type=dict(sorted(events_by_type.items())),
    )
    path = run_dir / RUN_FILE_NAME
    try:
        rewrite_run_file(path, ended.document())
    except OSError as error:
        print(
            f"esper: cannot rewrite {path} with how the run ended: {reason(error)}; it "
            "still holds the record of its start",
            file=sys.stderr,
        )
        return INCOMPLETE_OUTPUT if ending.exit_code == 0 else ending.exit_code
    return ending.exit_code


def _now() -> str:
    return datetime.now(UTC).isoformat()
