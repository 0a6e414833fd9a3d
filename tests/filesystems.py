"""A small tmpfs of a test's own, to fill for real: writes on it fail with ENOSPC as they do
on a full disk. Imported as `from filesystems import Tmpfs` (tests/ is on sys.path).

Mounting needs root, as this machine and CI have; elsewhere run pytest under
`unshare -rm` (a user and mount namespace of its own, no root needed).
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PAGE = os.sysconf("SC_PAGE_SIZE")


class Tmpfs:
    """A tmpfs mounted at `path` with `size` bytes and, optionally, at most `inodes` files
    and directories (its root included)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fillers = 0

    def free_bytes(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def fill(self, leave: int = 0) -> Path:
        """Write a filler file that leaves `leave` bytes free (in whole pages), or, with
        leave=0, until the filesystem refuses more; return its path, to delete for space."""
        filler = self.path / f"filler-{self._fillers}"
        self._fillers += 1
        chunk = b"\0" * PAGE
        with filler.open("wb", buffering=0) as file:
            try:
                while leave == 0 or self.free_bytes() > leave:
                    file.write(chunk)
            except OSError as error:
                if error.errno != errno.ENOSPC or leave != 0:
                    raise
        return filler

    def use_up_inodes(self) -> list[Path]:
        """Create empty files until no inode is left; return them, to delete for room."""
        created: list[Path] = []
        while True:
            path = self.path / f"inode-{len(created)}"
            try:
                path.touch(exist_ok=False)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                return created
            created.append(path)

    def resize(self, size: int) -> None:
        _run(["mount", "-o", f"remount,size={size}", str(self.path)])


@contextmanager
def mounted_tmpfs(path: Path, size: int, inodes: int | None = None) -> Iterator[Tmpfs]:
    """Mount a fresh tmpfs at `path` (created) for the block; always unmounted after."""
    path.mkdir(parents=True)
    options = f"size={size}" + (f",nr_inodes={inodes}" if inodes is not None else "")
    _run(["mount", "-t", "tmpfs", "-o", options, "esper-test", str(path)])
    try:
        yield Tmpfs(path)
    finally:
        # Lazy: a failed test may still hold a file open there, which would make a plain
        # umount fail as busy and leave the mount behind.
        _run(["umount", "--lazy", str(path)])


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} failed: {result.stderr.strip()}; these tests mount a small "
            "tmpfs, which needs root (or pytest run under `unshare -rm`)",
            pytrace=False,
        )
