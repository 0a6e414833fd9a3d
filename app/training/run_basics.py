"""A run's top-level settings, their choices and their defaults.

RunConfig (config.py) adds its sections to these. They live apart, importing nothing
heavy, so that the command line can show them in its help without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.contracts.events import TelemetryLevel

CONTROLLERS = ("ppo", "heuristic", "static")
DATASETS = ("digits", "synthetic", "cifar10")


@dataclass(frozen=True)
class RunBasics:
    """The settings with a flag of their own: what trains, how much, on what data."""

    controller: str = "ppo"
    recurrent: bool = False
    envs: int = 4
    episodes: int = 32
    max_epochs: int = 22
    dataset: str = "digits"
    data_dir: Path | None = None
    seed: int = 0
    device: str = "cpu"
    telemetry_level: TelemetryLevel = TelemetryLevel.NORMAL
