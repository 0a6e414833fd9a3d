"""Everything about `esper train`'s input that can fail, checked before any work starts:
the checkpoint to resume from, the configuration, the device, the checkpoint path to save
to and the dataset."""

from __future__ import annotations

import argparse
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from app.cli.config import resolve
from app.cli.errors import UsageError
from app.cli.resume import Resumed, load_resumed
from app.training.checkpoint import CheckpointError
from app.training.config import RunConfig
from app.training.datasets import Dataset, DatasetError, load_dataset
from app.training.resume import check_resumable
from instrumentation.report import INSTALL_HINT


@dataclass(frozen=True)
class Prepared:
    """A run's checked input: its configuration, its data, and the checkpoint it
    continues (None for a fresh run)."""

    config: RunConfig
    dataset: Dataset
    resumed: Resumed | None


def prepare(args: argparse.Namespace) -> Prepared:
    """The run's input, or a UsageError naming the first bad input. The checkpoint comes
    first: a flag not given takes its value."""
    resumed = load_resumed(args.resume) if args.resume else None
    config = resolve(args, resumed)
    _check_device(config.device)
    if args.save:
        _check_save_path(args.save)
    if args.report and importlib.util.find_spec("plotly") is None:
        raise UsageError(f"--report needs plotly: {INSTALL_HINT}")
    try:
        dataset = load_dataset(config.dataset, config.data_dir, config.seed)
        if resumed is not None:
            check_resumable(resumed.path, resumed.state, config)
    except (DatasetError, CheckpointError) as error:
        raise UsageError(str(error)) from None
    return Prepared(config, dataset, resumed)


def _check_device(device: str) -> None:
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device {device!r} is not a torch device") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine")
    try:
        torch.empty(0, device=parsed)
    except (RuntimeError, AssertionError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UsageError(f"--device {device} cannot be used: {reason}") from None


def _check_save_path(path: Path) -> None:
    """Fail now rather than lose the first batch to an unwritable checkpoint path."""
    if path.is_dir():
        raise UsageError(f"--save {path} is a directory; give a file name")
    parent = path.parent
    if parent.exists() and not (parent.is_dir() and os.access(parent, os.W_OK)):
        raise UsageError(f"--save {path}: cannot write in {parent}")
