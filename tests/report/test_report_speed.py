"""A long run's log is reported in time proportional to reading it: the report of 100,000
events costs a few times what reading them costs, whatever the machine
(`benchmarks/report.py` measures the real numbers)."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from instrumentation.jsonl_reader import read_run_events, run_log_sets
from instrumentation.report import write_report

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "report.py"


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("report_benchmark", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_a_100k_event_log_is_reported_in_time_proportional_to_reading_it(
    tmp_path: Path,
) -> None:
    run = _benchmark().events_log(tmp_path, 100_000)

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
