"""The README's main command, `esper train` on its defaults, is a healthy run: none of the
detectors that watch for broken machinery raises an event, although each of them looked
(the summary's checks line counts what they looked at)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers import read_log

from app.contracts.events import EventType
from app.training.config import RunConfig

# Raised only when something is wrong with the run itself, never by a healthy one.
FAULTS = (
    EventType.MEMORY_WARNING,
    EventType.REWARD_HACKING_SUSPECTED,
    EventType.ISOLATION_VIOLATION,
    EventType.GRADIENT_ANOMALY,
)
CHECKS = re.compile(
    r"checks: +(\d+) host steps \((\d+) isolation probes\), (\d+) memory samples "
    r"\(peak RSS ([\d.]+)% of"
)


@pytest.mark.slow
def test_default_run_raises_no_fault(tmp_path: Path) -> None:
    telemetry_dir = tmp_path / "telemetry"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "train",
            "--no-progress",
            "--telemetry-dir",
            str(telemetry_dir),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [log] = telemetry_dir.glob("telemetry_*/events.jsonl")
    counts = Counter(event.event_type for event in read_log(log))
    assert {fault: counts[fault] for fault in FAULTS} == dict.fromkeys(FAULTS, 0)

    defaults = RunConfig()
    # The detectors had something to look at: seeds trained, PPO updated on every batch.
    assert counts[EventType.SEED_GERMINATED] > 0
    assert counts[EventType.PPO_UPDATE_COMPLETED] == defaults.batches
    assert defaults.batches >= defaults.reward_hacking.window, "the trend check ran"
    match = CHECKS.search(done.stderr)
    assert match, done.stderr
    steps, probes, samples, peak = match.groups()
    assert int(steps) > 0 and int(probes) > 0
    assert int(samples) == defaults.batches * defaults.max_epochs
    assert 0 < float(peak) < 100 * defaults.memory.warning_fraction
