"""A long run's log is reported in time proportional to reading it: the report of 100,000
events costs a few times what reading them costs, whatever the machine
(`benchmarks/report.py` measures the real numbers)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from report_logs import long_run_log

from instrumentation.jsonl_reader import read_run_events, run_log_sets
from instrumentation.report import write_report


@pytest.mark.slow
def test_a_100k_event_log_is_reported_in_time_proportional_to_reading_it(
    tmp_path: Path,
) -> None:
    run = long_run_log(tmp_path, 100_000)

    started = time.perf_counter()
    assert sum(1 for _ in read_run_events(run_log_sets(run))) == 100_000
    reading = time.perf_counter() - started
    started = time.perf_counter()
    result = write_report(run)
    reporting = time.perf_counter() - started

    assert result.events == 100_000
    bound = 5 * reading + 5
    assert reporting < bound, (
        f"read in {reading:.2f} s, reported in {reporting:.2f} s: over the bound of "
        f"5 x reading + 5 s = {bound:.2f} s"
    )
    assert result.size < 8_000_000
