"""Saving a checkpoint after every batch without letting a full disk end the run.

A failed save (ENOSPC, EFBIG past a file size limit, any OSError) leaves the previous
checkpoint whole and no partial file; training goes on and the next batch's save tries
again. The first failure is reported at once, and the run's summary says which batch the
checkpoint holds and how many saves failed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.plurals import counted
from app.training.checkpoint import save_checkpoint


@dataclass
class CheckpointSaver:
    """Saves after each batch. In a run of several processes every rank has one, since
    every rank takes part in gathering the state, and rank 0's alone writes
    (`writes`). `identity` goes into every checkpoint beside the state: the run that
    writes it (checkpoint_config.py)."""

    path: Path
    report: Callable[[str], None]
    writes: bool = True
    identity: Mapping[str, Any] = field(default_factory=dict)
    saved_after: int | None = None  # the batch the file holds, when this run saved it
    failures: int = 0
    last_error: str = ""
    last_failed: bool = False

    def save(self, state: dict[str, Any], batch: int) -> None:
        if not self.writes:
            return
        try:
            save_checkpoint(self.path, {**state, **self.identity})
        except OSError as error:
            self.failures += 1
            self.last_failed = True
            self.last_error = error.strerror or type(error).__name__
            if self.failures == 1:
                kept = (
                    "the previous checkpoint is kept"
                    if self.path.exists()
                    else "there is no checkpoint yet"
                )
                self.report(
                    f"esper: cannot save checkpoint {self.path} after batch {batch}: "
                    f"{self.last_error}; training continues, {kept}, and the save is "
                    "retried after each batch"
                )
            return
        self.saved_after = batch
        self.last_failed = False

    def summary_line(self) -> str:
        """`  checkpoint: FILE, saved after batch N[, K saves failed (REASON)]`."""
        if self.saved_after is not None:
            saved = f"saved after batch {self.saved_after}"
        elif self.failures:
            saved = "not saved by this run"
        else:
            saved = "not saved: no batch completed"
        failed = ""
        if self.failures:
            failed = f", {counted(self.failures, 'save')} failed ({self.last_error})"
        return f"  checkpoint: {self.path}, {saved}{failed}"


def checkpoint_lines(saver: CheckpointSaver | None) -> list[str]:
    """The summary's checkpoint line; none when no --save was given."""
    return [] if saver is None else [saver.summary_line()]
