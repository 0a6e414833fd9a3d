"""`esper train --resume FILE`: the checkpoint, the configuration it was written with, and
the flags that may not change it.

A flag not given takes the checkpoint's value, so `--resume FILE` alone continues the run
as it was configured. `--episodes` is the new total. A flag given with another value than
the checkpoint's for a setting the run cannot change midway (`run_setup`: the controller,
the policy, the environments, the dataset, the episode length) is refused, every such
flag in one line. The other flags (the seed, the device, telemetry, thresholds, `--set`)
apply from the resumed run on.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.cli.errors import UsageError
from app.training.checkpoint import CheckpointError, load_checkpoint
from app.training.checkpoint_config import saved_config, saved_run_id
from app.training.config import RunConfig
from app.training.resume import run_setup
from instrumentation.event_log import ResumedFrom


@dataclass(frozen=True)
class Resumed:
    """A checkpoint to continue from: its state, and the run that wrote it."""

    path: Path
    state: dict[str, Any]
    config: RunConfig
    run_id: str | None

    def record(self) -> ResumedFrom:
        """What run.json says of it, its path absolute so that it still names the file
        from another directory; the state's progress has been checked by then
        (`check_resumable`)."""
        path = str(self.path.absolute())
        return ResumedFrom(path, self.run_id, self.state["episodes_completed"])


def load_resumed(path: Path) -> Resumed:
    """The checkpoint at `path` with the configuration it records, or a UsageError
    naming it."""
    try:
        state = load_checkpoint(path)
        try:
            return Resumed(path, state, saved_config(state), saved_run_id(state))
        except CheckpointError as error:
            raise CheckpointError(f"checkpoint {path}: {error}") from None
    except CheckpointError as error:
        raise UsageError(str(error)) from None


def refuse_conflicts(args: argparse.Namespace, resumed: Resumed) -> None:
    """A UsageError listing every flag given with another value than the checkpoint's
    for a setting it must keep."""
    made, asked = [], []
    for name, value in run_setup(resumed.config).items():
        if name in args.given and getattr(args, name) != value:
            made.append(_flag(name, value))
            asked.append(_flag(name, getattr(args, name)))
    if made:
        raise UsageError(
            f"checkpoint {resumed.path} was made with {', '.join(made)}; "
            f"this command asks for {', '.join(asked)}"
        )


def _flag(name: str, value: object) -> str:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else f"no {flag}"
    return f"{flag} {value}"
