"""`esper train` when the disk fills: on a real tmpfs (ENOSPC) and under a real file size
limit (EFBIG). Mid-run, the run finishes, exits 3 and says how many events the log lost,
and every line the log kept is whole; at the start, it exits 2 with one line and leaves
nothing behind."""

from __future__ import annotations

import json
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_runs import child_environment, only_run_dir
from filesystems import mounted_tmpfs

KIB = 1024
# Eight batches of two environments: about a hundred events, 60 kB of log.
RUN = ("--dataset", "synthetic", "--envs", "2", "--max-epochs", "4", "--episodes", "16")
RUN += ("--no-progress",)
LOSS_LINE = re.compile(r"  log loss:  (\d+) events? not written to the event log \((.+)\)")


# `esper` in a process that left SIGXFSZ at the kernel's default, as an interpreter embedded
# without its signal handlers does (CPython ignores SIGXFSZ at startup otherwise).
SIGXFSZ_DEFAULT = (
    "import signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_DFL); "
    "from app.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _train(
    telemetry_dir: Path,
    cwd: Path,
    preexec_fn: Callable[[], None] | None = None,
    command: tuple[str, ...] = ("-m", "app"),
) -> subprocess.CompletedProcess[str]:
    def prepare() -> None:
        # A child of a non-interactive shell's background job inherits SIGINT ignored.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if preexec_fn is not None:
            preexec_fn()

    return subprocess.run(
        [sys.executable, *command, "train", *RUN, "--telemetry-dir", str(telemetry_dir)],
        cwd=cwd,
        env=child_environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=prepare,
        check=False,
    )


def _emitted(stderr: str) -> int:
    """The summary's count of events the run emitted."""
    match = re.search(r"^  events:    (\d+) ", stderr, re.MULTILINE)
    assert match, stderr
    return int(match[1])


def _logged_lines(telemetry_dir: Path) -> list[str]:
    """The lines of the run's events.jsonl; each must be a whole JSON object."""
    raw = (only_run_dir(telemetry_dir) / "events.jsonl").read_text(encoding="utf-8")
    assert raw.endswith("\n"), "the last line of the log is cut"
    lines = raw.splitlines()
    for line in lines:
        assert isinstance(json.loads(line), dict)
    return lines


def _assert_incomplete_run(run: subprocess.CompletedProcess[str], telemetry_dir: Path) -> str:
    """The run completed, exited 3, and its log-loss count is what the log lacks; returns
    the reason the summary gives."""
    assert run.returncode == 3, run.stderr
    assert "esper: training completed in " in run.stderr
    (loss,) = LOSS_LINE.findall(run.stderr)
    lines = _logged_lines(telemetry_dir)
    assert lines, "the log kept the events that fitted"
    assert int(loss[0]) == _emitted(run.stderr) - len(lines) > 0
    assert f"sink errors: {{'jsonl': {loss[0]}}}" in run.stderr
    return loss[1]


@pytest.mark.slow
def test_a_disk_that_fills_mid_run_exits_3_and_counts_the_lost_events(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "fs", size=256 * KIB) as tmpfs:
        tmpfs.fill(leave=24 * KIB)
        telemetry_dir = tmpfs.path / "telemetry"

        run = _train(telemetry_dir, tmp_path)

        assert _assert_incomplete_run(run, telemetry_dir) == "No space left on device"


@pytest.mark.slow
@pytest.mark.parametrize(
    "command", [("-m", "app"), ("-c", SIGXFSZ_DEFAULT)], ids=["python -m app", "SIGXFSZ default"]
)
def test_a_file_size_limit_mid_run_exits_3_instead_of_killing_the_run(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    limit = 8 * KIB

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    telemetry_dir = tmp_path / "telemetry"
    run = _train(telemetry_dir, tmp_path, limit_file_size, command)

    assert run.returncode != -signal.SIGXFSZ, "killed by SIGXFSZ"
    assert _assert_incomplete_run(run, telemetry_dir) == "File too large"
    assert (only_run_dir(telemetry_dir) / "events.jsonl").stat().st_size <= limit


@pytest.mark.slow
@pytest.mark.parametrize("full", ["no space", "no inodes", "no space, directory exists"])
def test_a_disk_full_at_start_exits_2_with_one_line_and_leaves_nothing(
    tmp_path: Path, full: str
) -> None:
    inodes = 3 if full == "no inodes" else None  # the root, runs/ and runs/telemetry/
    with mounted_tmpfs(tmp_path / "fs", size=256 * KIB, inodes=inodes) as tmpfs:
        telemetry_dir = tmpfs.path / "runs" / "telemetry"
        if full == "no space, directory exists":
            earlier = telemetry_dir / "telemetry_2025-01-01_000000"
            earlier.mkdir(parents=True)
            (earlier / "events.jsonl").write_text("{}\n")
        before = sorted(tmpfs.path.rglob("*"))
        if full != "no inodes":
            before.append(tmpfs.fill())

        run = _train(telemetry_dir, tmp_path)

        assert run.returncode == 2, run.stderr
        assert run.stderr.splitlines() == [
            f"esper: error: cannot write telemetry to {telemetry_dir}: No space left on device"
        ]
        assert sorted(tmpfs.path.rglob("*")) == sorted(before), "something was left behind"
