"""Datasets the host trains on; none is ever downloaded."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from app.training.cifar_pickle import load_batch
from app.training.run_basics import DATASETS as DATASETS

_TENSORS = ("train_x", "train_y", "val_x", "val_y")


class DatasetError(Exception):
    """A dataset cannot be loaded; the message says what is missing or wrong."""


@dataclass(frozen=True)
class Dataset:
    """Train/validation tensors (images NxCxHxW, float32, standardized; labels int64)."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    def to(self, device: torch.device) -> Dataset:
        """The same data on `device`, moved once so that a training step only indexes it
        (itself when it is there already)."""
        moved = {name: getattr(self, name).to(device) for name in _TENSORS}
        if all(tensor is getattr(self, name) for name, tensor in moved.items()):
            return self
        return replace(self, **moved)


def load_dataset(name: str, data_dir: Path | None = None, seed: int = 0) -> Dataset:
    if name == "digits":
        return _digits(seed)
    if name == "synthetic":
        return _synthetic(seed)
    if name == "cifar10":
        return _cifar10(data_dir)
    raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def _split(
    name: str, images: np.ndarray, labels: np.ndarray, val_fraction: float, seed: int
) -> Dataset:
    order = np.random.default_rng(seed).permutation(len(images))
    n_val = int(len(images) * val_fraction)
    val, train = order[:n_val], order[n_val:]
    mean, std = images[train].mean(), images[train].std()
    x = torch.from_numpy(((images - mean) / std).astype(np.float32))
    y = torch.from_numpy(labels.astype(np.int64))
    return Dataset(name, x[train], y[train], x[val], y[val], int(labels.max()) + 1)


def _digits(seed: int) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, shipped in the wheel)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)[:, None, :, :]
    return _split("digits", images, np.asarray(bunch.target), 0.25, seed)


def _synthetic(seed: int) -> Dataset:
    """Small, fast and deterministic: class-specific 8x8 patterns under Gaussian noise."""
    rng = np.random.default_rng(seed)
    num_classes, per_class = 4, 96
    prototypes = rng.normal(size=(num_classes, 1, 8, 8))
    labels = np.repeat(np.arange(num_classes), per_class)
    images = prototypes[labels] + rng.normal(scale=1.5, size=(len(labels), 1, 8, 8))
    return _split("synthetic", images, labels, 0.25, seed)


_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_FOLDER = "cifar-10-batches-py"


def _cifar10(data_dir: Path | None) -> Dataset:
    """CIFAR-10 in its python pickle form, read from `data_dir` (folder or the archive)."""
    if data_dir is None:
        raise DatasetError("cifar10 needs --data-dir pointing at the CIFAR-10 python files")
    folder = data_dir / _CIFAR_FOLDER
    archive_path = data_dir / _CIFAR_ARCHIVE
    if not folder.is_dir() and archive_path.is_file():
        try:
            _extract(archive_path, data_dir)
        except (tarfile.TarError, OSError) as error:
            raise DatasetError(f"cannot extract {archive_path} into {data_dir}: {error}") from None
    if not folder.is_dir():
        raise DatasetError(
            f"no CIFAR-10 in {data_dir}: expected {folder} or {data_dir / _CIFAR_ARCHIVE} "
            "(the python version from the CIFAR-10 site); nothing is downloaded"
        )
    train = [_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    test = _cifar_batch(folder / "test_batch")
    train_x = np.concatenate([x for x, _ in train])
    train_y = np.concatenate([y for _, y in train])
    mean = train_x.mean(axis=(0, 2, 3), keepdims=True)
    std = train_x.std(axis=(0, 2, 3), keepdims=True)

    def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(((x - mean) / std).astype(np.float32)), torch.from_numpy(y)

    tx, ty = tensors(train_x, train_y)
    vx, vy = tensors(*test)
    return Dataset("cifar10", tx, ty, vx, vy, 10)


def _extract(archive_path: Path, data_dir: Path) -> None:
    """Unpack the archive's CIFAR folder into `data_dir`, whole or not at all.

    It is unpacked into a temporary folder beside it and renamed into place, so that an
    extraction cut short (a full disk, a bad member, Ctrl-C) leaves no half folder that
    the next run would take for the data set.
    """
    staging = Path(tempfile.mkdtemp(prefix=".cifar-10-extracting-", dir=data_dir))
    try:
        _extract_into(archive_path, staging)
        extracted = staging / _CIFAR_FOLDER
        if not extracted.is_dir():
            raise tarfile.TarError(f"the archive has no {_CIFAR_FOLDER} folder")
        extracted.rename(data_dir / _CIFAR_FOLDER)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_into(archive_path: Path, target: Path) -> None:
    """Unpack the archive without letting a member escape `target`.

    Python 3.11.4+ does that with the "data" extraction filter; earlier 3.11 releases
    (Debian 12 ships 3.11.2) lack filters, so members are checked here instead.
    """
    with tarfile.open(archive_path) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(target, filter="data")
            return
        root = target.resolve()
        for member in archive.getmembers():
            resolved = (root / member.name).resolve()
            if not (member.isfile() or member.isdir()) or not resolved.is_relative_to(root):
                raise tarfile.TarError(f"unsafe archive member {member.name!r}")
        archive.extractall(target)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DatasetError(f"CIFAR-10 file missing: {path}")
    try:
        with path.open("rb") as handle:
            batch = load_batch(handle)
        images = np.asarray(batch[b"data"], dtype=np.float64).reshape(-1, 3, 32, 32) / 255.0
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as error:  # a damaged pickle raises many types
        reason = _reason(error)
        raise DatasetError(f"CIFAR-10 file {path} is not a CIFAR-10 batch: {reason}") from None
    if len(labels) != len(images):
        raise DatasetError(
            f"CIFAR-10 file {path} has {len(images)} images but {len(labels)} labels"
        )
    if len(labels) and not 0 <= labels.min() <= labels.max() <= 9:
        raise DatasetError(f"CIFAR-10 file {path} has labels outside 0-9")
    return images, labels


def _reason(error: Exception) -> str:
    """The first line of the error, short: its text may quote bytes from the file."""
    text = str(error).splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."
