"""`esper replay` in a child process against hostile input: a line nested 100,000 deep, a
200 MB line without a newline under a bounded address space, and paths that are not
regular files. Each is one clear line on stderr, never a traceback, and what can be
replayed still is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from replay_runs import Replayed, records, replay_in_child

from instrumentation.jsonl_reader import MAX_DEPTH, MAX_LINE_BYTES

HUGE_FILE_BYTES = 200 * 1024 * 1024
# Address space the child may add to what it holds once Python and Esper are loaded:
# room for the replay's threads and buffers, far below the 200 MB line.
HEADROOM_BYTES = 96 * 1024 * 1024
BOUNDED_CHILD = """
import resource, sys

from app.cli import main

def address_space():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")

resource.setrlimit(
    resource.RLIMIT_AS, (address_space() + {headroom}, resource.RLIM_INFINITY)
)
try:
    bytearray({size})
except MemoryError:
    pass
else:
    sys.exit("the address-space limit leaves room for the whole line")
sys.exit(main(sys.argv[1:]))
"""


def assert_one_line_per_problem(replayed: Replayed, prefix: str, count: int = 1) -> list[str]:
    assert "Traceback" not in replayed.stderr, replayed.stderr
    lines = [line for line in replayed.stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == count, replayed.stderr
    return lines


@pytest.mark.slow
def test_a_line_nested_a_hundred_thousand_deep_is_reported_and_the_rest_replayed(
    legacy_log: Path, tmp_path: Path
) -> None:
    lines = legacy_log.read_text().splitlines()
    log = tmp_path / "events.jsonl"
    log.write_text("\n".join([*lines[:10], "[" * 100_000, *lines[10:]]) + "\n")

    replayed = replay_in_child([str(log)])

    assert replayed.code == 1, replayed.stderr
    [skipped] = assert_one_line_per_problem(replayed, "esper: skipped")
    assert skipped.startswith(f"esper: skipped {log}:11: nested deeper than {MAX_DEPTH} levels")
    assert "170 replayed from 1 file(s), 1 line(s) skipped" in replayed.stderr
    assert set(replayed.span_events()) == {record["event_id"] for record in records(legacy_log)}


@pytest.mark.slow
def test_a_huge_line_without_newline_is_replayed_in_bounded_address_space(
    legacy_log: Path, tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    log.write_text(legacy_log.read_text())
    kept = log.stat().st_size
    with log.open("r+b") as file:  # sparse: the zeros take no disk
        file.truncate(HUGE_FILE_BYTES)

    replayed = replay_in_child(
        [str(log)],
        python=("-c", BOUNDED_CHILD.format(headroom=HEADROOM_BYTES, size=HUGE_FILE_BYTES)),
        # One malloc arena: each extra one reserves 64 MiB of address space per thread.
        extra_env={"MALLOC_ARENA_MAX": "1"},
    )

    assert replayed.code == 1, replayed.stderr
    [skipped] = assert_one_line_per_problem(replayed, "esper: skipped")
    assert skipped == (
        f"esper: skipped {log}:171: line of {HUGE_FILE_BYTES - kept} bytes is over the "
        f"{MAX_LINE_BYTES}-byte limit"
    )
    assert "170 replayed from 1 file(s), 1 line(s) skipped" in replayed.stderr
    assert len(replayed.span_events()) == 170


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["character device", "FIFO", "directory"])
def test_a_path_that_is_not_a_regular_file_is_refused_with_one_line(
    kind: str, tmp_path: Path
) -> None:
    path = {"character device": Path("/dev/zero")}.get(kind, tmp_path / "events.jsonl")
    if kind == "FIFO":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    # A directory given itself is a run directory: its events.jsonl is what must be a file.
    argument = tmp_path if kind == "directory" else path

    # A reader that opened the FIFO would wait for a writer: the timeout fails the test.
    replayed = replay_in_child([str(argument)], timeout=60)

    assert replayed.code == 2
    assert replayed.stderr == (
        f"esper: error: cannot read event log {path}: not a regular file: a {kind}\n"
    )
    assert replayed.received.spans() == []
