"""A real training run, made once for the report's slow tests that need one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run directory of a quick `esper train` on the synthetic dataset: two
    environments, two batches of 8-epoch episodes, seeds and PPO updates."""
    telemetry = tmp_path_factory.mktemp("real-run")
    flags = ["--dataset", "synthetic", "--episodes", "4", "--envs", "2", "--max-epochs", "8"]
    flags += ["--no-progress", "--telemetry-dir", str(telemetry)]
    done = subprocess.run(
        [sys.executable, "-m", "app", "train", *flags],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (run,) = telemetry.glob("telemetry_*")
    return run
