"""Checkpoint files: the digest that catches changed bytes, the refusal of files without
one, what --resume says about paths that are no checkpoint, and saves that fail whole."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from app.training.checkpoint import (
    FORMAT,
    UNVERIFIABLE_FORMAT,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)


def largest_tensor(state: dict[str, Any]) -> tuple[str, torch.Tensor]:
    network: dict[str, torch.Tensor] = state["agent"]["network"]
    name = max(network, key=lambda key: network[key].numel())
    return name, network[name]


def tensor_offset(data: bytes, tensor: torch.Tensor) -> int:
    """Where the tensor's raw bytes lie in the file (exactly once)."""
    raw = tensor.detach().contiguous().numpy().tobytes()
    offset = data.find(raw)
    assert offset >= 0 and data.find(raw, offset + 1) < 0, "tensor bytes not found once"
    return offset


def flipped(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1 :]


def test_a_checkpoint_is_a_header_with_the_payload_digest_and_round_trips(
    tmp_path: Path, state: dict[str, Any]
) -> None:
    path = tmp_path / "ck.pt"
    save_checkpoint(path, state)
    data = path.read_bytes()
    version, digest, payload = data.split(b"\n", 2)
    assert version == FORMAT.encode()
    assert digest == b"sha256 " + hashlib.sha256(payload).hexdigest().encode()
    loaded = load_checkpoint(path)
    name, tensor = largest_tensor(state)
    assert torch.equal(loaded["agent"]["network"][name], tensor)
    assert loaded["batches_completed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_byte_changed_inside_a_tensor_is_caught_by_the_digest(
    tmp_path: Path, state: dict[str, Any], where: str
) -> None:
    path = tmp_path / "ck.pt"
    save_checkpoint(path, state)
    data = path.read_bytes()
    name, tensor = largest_tensor(state)
    start = tensor_offset(data, tensor)
    size = tensor.numel() * tensor.element_size()
    offset = {"first": start, "middle": start + size // 2, "last": start + size - 1}[where]
    damaged = flipped(data, offset)
    # Without the digest torch reads the damaged payload silently, with other weights.
    payload = damaged.split(b"\n", 2)[2]
    silently = torch.load(io.BytesIO(payload), weights_only=True)
    assert not torch.equal(silently["agent"]["network"][name], tensor)

    path.write_bytes(damaged)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert str(caught.value) == (
        f"checkpoint {path} is corrupt: its content does not match its sha256 digest"
    )


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda data: data[: len(data) // 2], "does not match its sha256 digest"),
        (lambda data: data[:30], "header is cut short"),
        (lambda data: data.replace(FORMAT.encode(), b"esper-checkpoint/9", 1), "format"),
        (lambda data: data.replace(b"sha256 ", b"sha256 0", 1), "digest"),
    ],
    ids=["truncated", "header-only", "unknown-format", "bad-digest"],
)
def test_a_damaged_header_or_payload_is_one_line_naming_the_file(
    tmp_path: Path, state: dict[str, Any], change: Any, complaint: str
) -> None:
    path = tmp_path / "ck.pt"
    save_checkpoint(path, state)
    path.write_bytes(change(path.read_bytes()))
    with pytest.raises(CheckpointError, match=complaint) as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_checkpoint_from_before_the_digest_is_refused(
    tmp_path: Path, state: dict[str, Any]
) -> None:
    path = tmp_path / "old.pt"
    torch.save({"format": UNVERIFIABLE_FORMAT, **state}, path)  # what esper wrote before
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"checkpoint {path} has no digest")
    assert UNVERIFIABLE_FORMAT in message and "\n" not in message


@pytest.mark.parametrize(
    ("make", "complaint"),
    [
        (lambda tmp: tmp / "missing.pt", "does not exist"),
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: Path("/dev/zero"), "is not a regular file"),
        (lambda tmp: Path(os.devnull), "is not a regular file"),
    ],
    ids=["missing", "directory", "dev-zero", "dev-null"],
)
def test_a_path_that_is_no_file_says_what_it_is(tmp_path: Path, make: Any, complaint: str) -> None:
    path = make(tmp_path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert str(caught.value).startswith(f"checkpoint {path} {complaint}")


def test_a_file_that_is_no_checkpoint_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


SAVE_UNDER_A_FILE_SIZE_LIMIT = """
import resource, signal, sys, torch
from pathlib import Path
from app.training.checkpoint import save_checkpoint
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    save_checkpoint(Path(sys.argv[1]), {"weights": torch.zeros(4 * limit, dtype=torch.uint8)})
except OSError as error:
    print(error.strerror)
"""


def test_a_save_past_the_file_size_limit_keeps_the_previous_file_and_no_partial(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"weights": torch.ones(8)})
    before = path.read_bytes()
    done = subprocess.run(
        [sys.executable, "-c", SAVE_UNDER_A_FILE_SIZE_LIMIT, str(path), "65536"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "File too large"
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]
