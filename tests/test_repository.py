"""The repository stands alone: a clone of it, and nothing beside it, is all a user has, so
no tracked file may point to a path outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A relative path climbing out of the repository root, or the design notes it was built
# from, which users never get.
OUTSIDE = re.compile(r"\.\./shared|\bshared/fixtures\b|DESIGN\.md|DESIGN §")


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    files = [ROOT / name.decode() for name in listed if name]
    return [path for path in files if path.is_file() and b"\0" not in path.read_bytes()[:4096]]


def test_no_tracked_file_refers_outside_the_repository() -> None:
    this_file = Path(__file__).resolve()
    offending = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in tracked_text_files()
        if path != this_file
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not offending, "\n".join(offending)


def test_the_legacy_log_is_part_of_the_repository() -> None:
    fixture = ROOT / "tests" / "fixtures" / "legacy-events-2025-12-06.jsonl"
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", str(fixture)], cwd=ROOT, capture_output=True
    )
    assert tracked.returncode == 0, f"{fixture} is not tracked by git"
