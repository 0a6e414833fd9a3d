"""Where `esper report` writes, and what it never harms: it refuses to write over any
file it reads (a log of the run, rotated or another rank's, or its run.json), gives the
report the mode the umask asks for, survives a run.json nested too deep, and leaves
nothing behind when a signal stops it."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from report_logs import two_batches, write_ranks, write_run

from app.cli import main
from instrumentation.jsonl_reader import MAX_DEPTH
from instrumentation.report import write_report


def _files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def _link(run: Path, tmp_path: Path, how: Callable[[Path, Path], None]) -> Path:
    """A name outside the run for its events.jsonl, made by how (a hard or soft link)."""
    name = tmp_path / "elsewhere.html"
    how(run / "events.jsonl", name)
    return name


# How each case names one of the files the report reads, given the run directory.
TARGETS: dict[str, Callable[[Path, Path], Path]] = {
    "the log": lambda run, tmp: run / "events.jsonl",
    "run.json": lambda run, tmp: run / "run.json",
    "the log by a longer path": lambda run, tmp: run / ".." / run.name / "events.jsonl",
    "a hard link to the log": lambda run, tmp: _link(run, tmp, os.link),
    "a symbolic link to the log": lambda run, tmp: _link(run, tmp, os.symlink),
}


@pytest.mark.parametrize("case", TARGETS)
def test_the_output_may_not_be_a_file_of_the_run(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "runs", two_batches())
    target = TARGETS[case](run, tmp_path)
    before = _files(run)

    code = main(["report", str(run), "-o", str(target)])

    role = "run.json" if case == "run.json" else "event log"
    assert code == 2
    assert capsys.readouterr().err == (
        f"esper: error: {target} is the run's {role}; choose another --output\n"
    )
    assert _files(run) == before


@pytest.mark.parametrize("rotated", [True, False])
def test_rotated_files_and_other_ranks_logs_are_files_of_the_run(
    tmp_path: Path, rotated: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    if rotated:
        run = write_run(tmp_path, two_batches(), max_bytes=1024)
        source, target = run, run / "events.jsonl.2"
    else:
        run = write_ranks(tmp_path, two_batches())
        source, target = run / "events.jsonl", run / "events-rank1.jsonl"
    assert target.is_file()
    before = _files(run)

    code = main(["report", str(source), "-o", str(target)])

    assert code == 2
    assert capsys.readouterr().err.endswith(" is the run's event log; choose another --output\n")
    assert _files(run) == before


@pytest.mark.parametrize("record", ["[" * 100_000, '{"config": ' + "[" * 100_000])
def test_a_run_json_nested_too_deep_is_unreadable_and_said_so(
    tmp_path: Path, record: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path, two_batches())
    (run / "run.json").write_text(record)

    code = main(["report", str(run)])

    assert code == 0, capsys.readouterr().err
    page = (run / "report.html").read_text(encoding="utf-8")
    assert f"unreadable: {run / 'run.json'}: nested deeper than {MAX_DEPTH} levels" in page


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.parametrize(("mask", "mode"), [(0o077, 0o600), (0o002, 0o664), (0o022, 0o644)])
def test_the_report_has_the_mode_the_umask_asks_for(tmp_path: Path, mask: int, mode: int) -> None:
    run = write_run(tmp_path, two_batches())

    with _umask(mask):
        report = write_report(run).path

    assert stat.S_IMODE(report.stat().st_mode) == mode


@pytest.mark.slow
def test_a_signal_while_the_report_is_made_leaves_nothing_behind(tmp_path: Path) -> None:
    run = write_run(tmp_path, two_batches())
    log = run / "events.jsonl"
    log.write_bytes(log.read_bytes() * 4000)  # about 100,000 events: seconds to read
    before = _files(run)
    report = subprocess.Popen(
        [sys.executable, "-m", "app", "report", str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(run.glob(".report.html.*.partial")) and time.monotonic() < deadline:
        time.sleep(0.005)

    report.send_signal(signal.SIGTERM)
    out, err = report.communicate(timeout=60)

    assert report.returncode == 143, err
    assert (out, err) == ("", "esper: terminated while writing the report; nothing written\n")
    assert _files(run) == before


def test_a_link_to_a_log_is_reported_with_the_run_json_beside_the_log(tmp_path: Path) -> None:
    run = write_run(tmp_path / "telemetry", two_batches())
    link = tmp_path / "elsewhere" / "events.jsonl"
    link.parent.mkdir()
    link.symlink_to(run / "events.jsonl")
    (link.parent / "run.json").write_text('{"run_id": "not-this-run"}')

    result = write_report(link, tmp_path / "report.html")

    page = result.path.read_text(encoding="utf-8")
    assert "not-this-run" not in page and "report-test" in page
    assert "From run.json" in page and "no run.json beside the log" not in page
