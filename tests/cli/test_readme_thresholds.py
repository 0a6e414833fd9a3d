"""README's table of detector thresholds against the real configuration: every key of the
detector sections is documented, and every documented default is the real one."""

from __future__ import annotations

import re
from pathlib import Path

from app.training.config import RunConfig
from app.training.overrides import config_table

README = Path(__file__).resolve().parents[2] / "README.md"
# The sections whose every key tunes a detector; the table covers them all.
DETECTOR_SECTIONS = ("anomaly", "progress", "health", "memory", "reward_hacking")
ROW = re.compile(r"^\| `([a-z_]+\.[a-z_]+)` \| ([^|]*) \|", re.MULTILINE)


def documented() -> dict[str, str]:
    return {key: default.strip() for key, default in ROW.findall(README.read_text())}


def test_every_detector_threshold_is_documented() -> None:
    keys = [key for key, _ in config_table(RunConfig()) if key.split(".")[0] in DETECTOR_SECTIONS]
    missing = [key for key in keys if key not in documented()]
    assert not missing, f"README's threshold table lacks {missing}"


def test_documented_defaults_are_the_real_ones() -> None:
    real = dict(config_table(RunConfig()))
    rows = documented()
    assert rows, "no threshold table found in README"
    assert {key: rows[key] for key in rows} == {key: real.get(key) for key in rows}
