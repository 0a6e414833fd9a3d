"""The in-process OTLP receivers of tests/otel on the import path, for the summary's links
to where a run's telemetry went, and the report's logs of tests/report, for a long log."""

from __future__ import annotations

import sys
from pathlib import Path

# pytest puts a test directory on sys.path only when it collects it, so `pytest tests/cli`
# alone needs this for `from receivers import ...` and `from report_logs import ...`.
for directory in ("otel", "report"):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / directory))
