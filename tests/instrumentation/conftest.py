"""Locates the legacy event log that the original system wrote (shared/fixtures/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

LEGACY_LOG_NAME = "legacy-events-2025-12-06.jsonl"


def _shared_dir() -> Path:
    configured = os.environ.get("ESPER_SHARED_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2].parent / "shared"


@pytest.fixture(scope="session")
def legacy_log() -> Path:
    path = _shared_dir() / "fixtures" / LEGACY_LOG_NAME
    if not path.is_file():
        pytest.fail(
            f"legacy event log not found at {path}: the repository's parent must hold "
            "shared/fixtures/, or set ESPER_SHARED_DIR to the shared directory"
        )
    return path
