"""Datasets: the bundled digits, the synthetic set, and CIFAR-10 read from local files."""

from __future__ import annotations

import os
import pickle
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from app.training.datasets import DATASETS, Dataset, DatasetError, load_dataset

CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
PER_FILE = 4


def assert_standardized(x: torch.Tensor, dims: tuple[int, ...]) -> None:
    assert x.mean(dim=dims).abs().max().item() < 1e-4
    assert (x.std(dim=dims, correction=0) - 1).abs().max().item() < 1e-4


def test_digits_loads_8x8_images_of_10_classes_standardized() -> None:
    data = load_dataset("digits")
    assert data.name == "digits"
    assert data.train_x.dtype == data.val_x.dtype == torch.float32
    assert data.train_y.dtype == data.val_y.dtype == torch.int64
    assert data.train_x.shape[1:] == data.val_x.shape[1:] == (1, 8, 8)
    assert len(data.train_x) == len(data.train_y) and len(data.val_x) == len(data.val_y)
    assert len(data.train_x) + len(data.val_x) == 1797
    assert len(data.val_x) == 1797 // 4
    assert data.num_classes == 10
    assert set(data.train_y.tolist()) == set(range(10))
    assert (data.in_channels, data.image_size) == (1, 8)
    assert_standardized(data.train_x, (0, 1, 2, 3))


def test_digits_split_depends_on_the_seed_but_not_the_pixels() -> None:
    a, b = load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert not torch.equal(a.train_y, b.train_y)
    # Same images, differently split: the multiset of labels over both parts is the same.
    all_a = torch.cat([a.train_y, a.val_y]).sort().values
    all_b = torch.cat([b.train_y, b.val_y]).sort().values
    assert torch.equal(all_a, all_b)


def _tensors(data: Dataset) -> tuple[torch.Tensor, ...]:
    return data.train_x, data.train_y, data.val_x, data.val_y


def test_synthetic_is_deterministic_per_seed() -> None:
    first, again, other = (load_dataset("synthetic", seed=s) for s in (3, 3, 4))
    assert all(torch.equal(x, y) for x, y in zip(_tensors(first), _tensors(again), strict=True))
    assert not torch.equal(first.train_x, other.train_x)
    assert first.train_x.shape[1:] == (1, 8, 8) and first.train_x.dtype == torch.float32
    assert first.num_classes == 4
    assert len(first.train_x) + len(first.val_x) == 4 * 96
    assert_standardized(first.train_x, (0, 1, 2, 3))


def _write_cifar(
    root: Path, seed: int = 0, protocol: int = pickle.DEFAULT_PROTOCOL
) -> tuple[np.ndarray, np.ndarray]:
    """A fake CIFAR-10 python folder under root, PER_FILE images per batch file, with the
    keys of the real files; returns the raw train images (N, 3072) and labels, in file
    order."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    train_images, train_labels = [], []
    for name in CIFAR_FILES:
        images = rng.integers(0, 256, size=(PER_FILE, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=PER_FILE).tolist()
        batch = {
            b"batch_label": f"training batch of {name}".encode(),
            b"labels": labels,
            b"data": images,
            b"filenames": [f"image_{i}.png".encode() for i in range(PER_FILE)],
        }
        with (folder / name).open("wb") as handle:
            pickle.dump(batch, handle, protocol=protocol)
        if name != "test_batch":
            train_images.append(images)
            train_labels += labels
    return np.concatenate(train_images), np.asarray(train_labels)


# 2: how the CIFAR-10 files are written; 4: Python's default; 5: numpy's _frombuffer.
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_loads_the_python_folder(tmp_path: Path, protocol: int) -> None:
    raw, labels = _write_cifar(tmp_path, protocol=protocol)
    data = load_dataset("cifar10", tmp_path)
    assert data.name == "cifar10"
    assert data.train_x.shape == (5 * PER_FILE, 3, 32, 32)
    assert data.val_x.shape == (PER_FILE, 3, 32, 32)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert data.num_classes == 10
    assert (data.in_channels, data.image_size) == (3, 32)
    assert data.train_y.tolist() == labels.tolist()
    # Rows are channel-major (1024 red, 1024 green, 1024 blue), standardized per channel.
    images = raw.reshape(-1, 3, 32, 32) / 255.0
    mean = images.mean(axis=(0, 2, 3), keepdims=True)
    std = images.std(axis=(0, 2, 3), keepdims=True)
    expected = torch.from_numpy(((images - mean) / std).astype(np.float32))
    torch.testing.assert_close(data.train_x, expected)
    assert_standardized(data.train_x, (0, 2, 3))


def test_cifar10_extracts_the_archive_when_there_is_no_folder(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "data"
    _write_cifar(source)
    target.mkdir()
    with tarfile.open(target / "cifar-10-python.tar.gz", "w:gz") as archive:
        archive.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    data = load_dataset("cifar10", target)
    assert data.train_x.shape == (5 * PER_FILE, 3, 32, 32)
    assert (target / "cifar-10-batches-py" / "test_batch").is_file()


def test_cifar10_archive_member_outside_the_data_dir_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.mkdir()
    (tmp_path / "evil").write_text("x")
    with tarfile.open(target / "cifar-10-python.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "evil", arcname="../evil-copy")
    with pytest.raises(DatasetError, match=r"cifar-10-python\.tar\.gz"):
        load_dataset("cifar10", target)
    assert not (tmp_path / "evil-copy").exists()
    assert [p.name for p in target.iterdir()] == ["cifar-10-python.tar.gz"]


@pytest.mark.parametrize(
    "content",
    [
        b"this is not a pickle",
        pickle.dumps({b"data": np.zeros((PER_FILE, 3072), np.uint8)})[:-10],
        pickle.dumps({b"images": np.zeros((PER_FILE, 3072), np.uint8), b"labels": [0] * 4}),
        pickle.dumps({b"data": np.zeros((PER_FILE, 100), np.uint8), b"labels": [0] * 4}),
    ],
    ids=["not-a-pickle", "truncated", "no-data-key", "wrong-image-size"],
)
def test_corrupt_cifar_batch_is_a_dataset_error_naming_the_file(
    tmp_path: Path, content: bytes
) -> None:
    _write_cifar(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(content)
    with pytest.raises(DatasetError, match="data_batch_3") as caught:
        load_dataset("cifar10", tmp_path)
    assert str(bad) in str(caught.value)


@pytest.mark.parametrize("content", [pickle.dumps([1, 2]), pickle.dumps(5)], ids=["list", "int"])
def test_cifar_batch_that_is_not_a_dict_is_a_dataset_error(tmp_path: Path, content: bytes) -> None:
    _write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(content)
    with pytest.raises(DatasetError, match="test_batch"):
        load_dataset("cifar10", tmp_path)


def test_cifar_batch_with_mismatched_labels_is_a_dataset_error(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    batch = {b"data": np.zeros((PER_FILE, 3072), np.uint8), b"labels": [0, 1]}
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(pickle.dumps(batch))
    with pytest.raises(DatasetError, match="data_batch_2"):
        load_dataset("cifar10", tmp_path)


def test_missing_cifar_file_is_named(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    missing = tmp_path / "cifar-10-batches-py" / "data_batch_5"
    missing.unlink()
    with pytest.raises(DatasetError, match="missing") as caught:
        load_dataset("cifar10", tmp_path)
    assert str(missing) in str(caught.value)


def test_cifar10_without_data_dir_says_so() -> None:
    with pytest.raises(DatasetError, match="--data-dir"):
        load_dataset("cifar10", None)


def test_missing_or_empty_cifar_dir_is_named(tmp_path: Path) -> None:
    for where in (tmp_path, tmp_path / "does-not-exist"):
        with pytest.raises(DatasetError, match="nothing is downloaded") as caught:
            load_dataset("cifar10", where)
        assert str(where) in str(caught.value)


def test_unknown_dataset_lists_the_choices() -> None:
    with pytest.raises(DatasetError, match="nope") as caught:
        load_dataset("nope")
    for name in DATASETS:
        assert name in str(caught.value)


def test_cifar10_written_by_numpy_1_loads(tmp_path: Path) -> None:
    """numpy 1 names its array rebuilder `numpy.core.multiarray._reconstruct`, numpy 2
    `numpy._core.multiarray._reconstruct`; files of either load under this numpy."""
    _write_cifar(tmp_path, protocol=2)
    numpy_2 = load_dataset("cifar10", tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    for name in CIFAR_FILES:
        path = folder / name
        data = path.read_bytes()
        assert b"cnumpy._core.multiarray\n_reconstruct\n" in data
        path.write_bytes(data.replace(b"cnumpy._core.multiarray", b"cnumpy.core.multiarray"))
    numpy_1 = load_dataset("cifar10", tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(_tensors(numpy_1), _tensors(numpy_2), strict=True))


class _Payload:
    """Pickles as a call of `function(argument)`: what a crafted data file would hold."""

    def __init__(self, function: object, argument: str) -> None:
        self.function, self.argument = function, argument

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return self.function, (self.argument,)


def _payloads(marker: Path) -> dict[str, _Payload]:
    """Calls that would each create `marker` if they ran."""
    return {
        "os.system": _Payload(os.system, f"touch {marker}"),
        "builtins.exec": _Payload(exec, f"open({str(marker)!r}, 'w').close()"),
        "builtins.eval": _Payload(eval, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.getoutput": _Payload(subprocess.getoutput, f"touch {marker}"),
    }


def malicious_batch(marker: Path, how: str, protocol: int = 2) -> bytes:
    """A data file shaped like a CIFAR batch with a payload hidden among its labels."""
    payload = _payloads(marker)[how]
    batch = {b"data": np.zeros((PER_FILE, 3072), np.uint8), b"labels": [0, 1, payload, 3]}
    return pickle.dumps(batch, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize(
    "how", ["os.system", "builtins.exec", "builtins.eval", "subprocess.getoutput"]
)
def test_a_cifar_file_that_would_run_code_is_refused_without_running_it(
    tmp_path: Path, how: str, protocol: int
) -> None:
    marker = tmp_path / "code-ran"
    content = malicious_batch(marker, how, protocol)
    # The payload is live: plain pickle runs it.
    pickle.loads(content)
    assert marker.exists()
    marker.unlink()

    _write_cifar(tmp_path / "data")
    bad = tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1"
    bad.write_bytes(content)
    with pytest.raises(DatasetError) as caught:
        load_dataset("cifar10", tmp_path / "data")
    assert not marker.exists(), "code from the data file ran"
    message = str(caught.value)
    assert message.startswith(f"CIFAR-10 file {bad} is not a CIFAR-10 batch: it refers to ")
    assert "\n" not in message


def test_a_refused_name_is_shown_escaped_and_short(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    name = "x\nesper: error: forged line" + "y" * 300
    bad.write_bytes(b"c" + name.encode() + b"\nsystem\n(tR.")
    with pytest.raises(DatasetError) as caught:
        load_dataset("cifar10", tmp_path)
    message = str(caught.value)
    assert "\n" not in message and len(message) < len(str(bad)) + 200


def test_an_archive_without_the_cifar_folder_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.mkdir()
    (tmp_path / "other").write_text("x")
    with tarfile.open(target / "cifar-10-python.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "other", arcname="other")
    with pytest.raises(DatasetError, match="no cifar-10-batches-py folder"):
        load_dataset("cifar10", target)
    assert [p.name for p in target.iterdir()] == ["cifar-10-python.tar.gz"]
