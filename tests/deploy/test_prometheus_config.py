"""prometheus/prometheus.yml is a valid configuration for the Prometheus it runs in.

`promtool` comes with the Debian `prometheus` package that CI installs for the e2e tests.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "prometheus" / "prometheus.yml"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_config() -> None:
    result = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_job_scrapes_a_compose_service() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                assert target.rsplit(":", 1)[0] in services, (job["job_name"], target)
