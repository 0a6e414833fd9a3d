"""Checkpoints: the controller and the run's progress, written atomically after each batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

FORMAT = "esper-checkpoint/1"


class CheckpointError(Exception):
    """A checkpoint cannot be read or does not fit this run; the message says why."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to a temporary file first, so an interrupted save never corrupts the last one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save({"format": FORMAT, **state}, partial)
    partial.replace(path)


def check_compatible(state: dict[str, Any], expected: dict[str, Any]) -> None:
    """Raise CheckpointError unless the checkpoint was written by a run of the same setup
    (`expected` maps each setting that must match to this run's value)."""
    for key, value in expected.items():
        if state.get(key) != value:
            written = state.get(key)
            raise CheckpointError(
                f"checkpoint was written with {key}={written!r}, this run has {key}={value!r}"
            )


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        # torch's own messages suggest weights_only=False: not advice to give about a
        # file that failed to load safely.
        reason = type(error).__name__
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a checkpoint: {reason}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an {FORMAT} file")
    return state
