"""A run's telemetry directory, created so that a run which cannot start can take it back.

Each run writes into a fresh `<telemetry_dir>/telemetry_YYYY-MM-DD_HHMMSS` (UTC). When the
run cannot start (a full disk, a read-only one), `RunDirectory.remove` deletes what this
process created there and nothing else: the files it is told it wrote, the run directory,
and those parents of it that did not exist before, each only while empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class RunDirectory:
    """The run directory and the parent directories created along with it, outermost first."""

    path: Path
    created_parents: tuple[Path, ...] = ()

    def remove(self, file_names: Iterable[str] = ()) -> None:
        """Delete the named files in the run directory, then the directories this process
        created, innermost first. A directory that is not empty (something that is not
        ours is in it) stops the removal there: it and its parents stay."""
        for name in file_names:
            (self.path / name).unlink(missing_ok=True)
        _remove_empty((*self.created_parents, self.path))


def create_run_directory(telemetry_dir: Path, started: datetime) -> RunDirectory:
    """Create a fresh `telemetry_<UTC time>` directory under telemetry_dir (and telemetry_dir
    itself, with its parents, when missing).

    Two runs started in the same second get `_1`, `_2`... suffixes instead of sharing a
    directory; `mkdir` without exist_ok makes the choice safe between processes too.
    When creating it fails, the parents created on the way are removed before the error
    propagates.
    """
    parents = _make_directories(telemetry_dir)
    base = f"telemetry_{started.astimezone(UTC):%Y-%m-%d_%H%M%S}"
    suffix = 0
    while True:
        candidate = telemetry_dir / (base if suffix == 0 else f"{base}_{suffix}")
        try:
            candidate.mkdir()
        except FileExistsError:
            suffix += 1
        except OSError:
            _remove_empty(parents)
            raise
        else:
            return RunDirectory(candidate, parents)


def join_run_directory(path: Path) -> RunDirectory:
    """The run directory that rank 0 of a run of several processes created, made here
    (with its parents) when this process does not share rank 0's disk."""
    created = _make_directories(path)
    return RunDirectory(path, tuple(directory for directory in created if directory != path))


def _make_directories(path: Path) -> tuple[Path, ...]:
    """Create path and its missing parents; return those this call created, outermost
    first. One that another process creates meanwhile is used, and is not counted ours."""
    missing: list[Path] = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    created: list[Path] = []
    try:
        for directory in reversed(missing):
            try:
                directory.mkdir()
            except FileExistsError:
                continue
            created.append(directory)
    except OSError:
        _remove_empty(created)
        raise
    return tuple(created)


def _remove_empty(directories: Sequence[Path]) -> None:
    """Remove the directories, the last (innermost) first, stopping at one that cannot be
    removed: not empty means something that is not ours is in it."""
    for directory in reversed(directories):
        try:
            directory.rmdir()
        except OSError:
            return
