"""Fixtures for the OpenTelemetry tests: a clean OTEL_* environment, OTLP receivers, and
one short real training run exported through the SDK to a receiver (per protocol).

The trainer's spans come from `trace.get_tracer()` proxies made at import time, which
follow the global provider: `configure_opentelemetry` installs a routing provider once
per process and points it at each session's own provider, so every run here gets
fresh providers and its own resource without touching another test's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from otel_runs import PROTOCOLS, ExportedRun, clear_otel_environment, train_and_export


@pytest.fixture(autouse=True)
def _clean_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OTEL_* variable of the machine running the tests leaks into them."""
    clear_otel_environment(monkeypatch)


@pytest.fixture(scope="session", params=PROTOCOLS)
def exported_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExportedRun]:
    """One short training run exported over `request.param` (grpc, http/protobuf), shared
    by every test that only reads what it exported."""
    yield train_and_export(request.param, tmp_path_factory.mktemp("telemetry"))
