"""Fixtures for the end-to-end telemetry tests, and the in-process OTLP receivers of
tests/otel on the import path (the child's real SDK exporters send to them)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_runs import Prometheus, Training, prometheus_binary

# pytest puts tests/otel on sys.path only when it collects that directory, so
# `pytest tests/e2e` alone needs this for `from receivers import ...`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "otel"))


@pytest.fixture
def training() -> Iterator[list[Training]]:
    """Register started runs here; any still alive at teardown is killed."""
    runs: list[Training] = []
    yield runs
    for run in runs:
        run.stop()


@pytest.fixture
def binary() -> str:
    """The `prometheus` binary; fails (never skips) when it is missing."""
    return prometheus_binary()


@pytest.fixture
def servers() -> Iterator[list[Prometheus]]:
    """Register started Prometheus servers here; each is stopped at teardown."""
    started: list[Prometheus] = []
    yield started
    for server in started:
        server.stop()
