"""What a finished `esper train` left in its telemetry directory: its run directory,
run.json and event log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def run_dir(telemetry_dir: Path) -> Path:
    (found,) = telemetry_dir.glob("telemetry_*")
    return found


def run_json(telemetry_dir: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((run_dir(telemetry_dir) / "run.json").read_text())
    return record


def logged_events(telemetry_dir: Path) -> list[dict[str, Any]]:
    text = (run_dir(telemetry_dir) / "events.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]
