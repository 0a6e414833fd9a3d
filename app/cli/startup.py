"""Everything about `esper train`'s input that can fail, checked before any work starts:
the configuration, the device, the checkpoint path to save to, the dataset and the
checkpoint to resume from."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch

from app.cli.config import resolve
from app.cli.errors import UsageError
from app.training.checkpoint import CheckpointError, load_checkpoint
from app.training.config import RunConfig
from app.training.datasets import Dataset, DatasetError, load_dataset
from app.training.resume import check_resumable


def prepare(args: argparse.Namespace) -> tuple[RunConfig, Dataset, dict[str, Any] | None]:
    """The configuration, the dataset and the checkpoint to resume from (None without
    --resume), or a UsageError naming the first bad input."""
    config = resolve(args)
    _check_device(config.device)
    if args.save:
        _check_save_path(args.save)
    try:
        dataset = load_dataset(config.dataset, config.data_dir, config.seed)
        checkpoint = load_checkpoint(args.resume) if args.resume else None
        if checkpoint is not None:
            check_resumable(args.resume, checkpoint, config)
    except (DatasetError, CheckpointError) as error:
        raise UsageError(str(error)) from None
    return config, dataset, checkpoint


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
