"""The in-process OTLP receivers of tests/otel on the import path, for the summary's links
to where a run's telemetry went."""

from __future__ import annotations

import sys
from pathlib import Path

# pytest puts tests/otel on sys.path only when it collects that directory, so
# `pytest tests/cli` alone needs this for `from receivers import ...`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "otel"))
