"""Checkpoints: the controller and the run's progress, written atomically after each batch.

A file is a two-line text header and a payload:

    esper-checkpoint/2
    sha256 <hex digest of the payload>
    <payload: torch.save of the state>

torch's reader does not notice bytes changed inside a tensor, so a damaged file would
resume with other weights; the digest is checked before the payload is read at all. The
payload is read with `weights_only=True`, which rebuilds tensors and plain containers and
runs no code from the file.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path
from typing import Any

import torch

FORMAT = "esper-checkpoint/2"
# Written before checkpoints carried a digest: a torch zip file with this "format" key.
UNVERIFIABLE_FORMAT = "esper-checkpoint/1"
_MAGIC = b"esper-checkpoint/"
_HEADER_LIMIT = 256


class CheckpointError(Exception):
    """A checkpoint cannot be read or does not fit this run; the message says why."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to `PATH.partial` and rename it over `path`, so that a save cut short (a
    full disk, Ctrl-C) leaves the previous checkpoint whole; the partial file is removed
    whatever stops the save. Raises OSError when the file cannot be written."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = f"{FORMAT}\nsha256 {hashlib.sha256(payload).hexdigest()}\n".encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("wb") as handle:
            handle.write(header)
            handle.write(payload)
            handle.flush()
            # Some file systems report a full disk only when the data reaches it.
            os.fsync(handle.fileno())
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The state saved in `path`, its digest verified; CheckpointError naming `path`
    when it is not a regular file, is damaged, or has no digest."""
    _check_regular_file(path)
    try:
        with path.open("rb") as handle:
            header = handle.read(_HEADER_LIMIT)
            if not header.startswith(_MAGIC):
                return _refuse_unverifiable(path)
            data = header + handle.read()
    except OSError as error:
        raise CheckpointError(f"checkpoint {path} cannot be read: {_reason(error)}") from None
    return _verified(path, data)


def _check_regular_file(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except OSError as error:
        raise CheckpointError(f"checkpoint {path} cannot be read: {_reason(error)}") from None
    if stat.S_ISDIR(mode):
        raise CheckpointError(f"checkpoint {path} is a directory, not a checkpoint file")
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"checkpoint {path} is not a regular file")


def _verified(path: Path, data: bytes) -> dict[str, Any]:
    """The state in `data` (a whole file that starts with the format line)."""
    lines = data.split(b"\n", 2)
    if len(lines) < 3:
        raise CheckpointError(f"checkpoint {path} is corrupt: its header is cut short")
    version, digest_line, payload = lines
    if version != FORMAT.encode("ascii"):
        shown = ascii(version[:40].decode("ascii", "replace"))
        raise CheckpointError(f"checkpoint {path} is in format {shown}, this esper reads {FORMAT}")
    expected = digest_line.removeprefix(b"sha256 ").decode("ascii", "replace")
    if hashlib.sha256(payload).hexdigest() != expected:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its content does not match its sha256 digest"
        )
    state = _torch_load(path, io.BytesIO(payload))
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a state")
    return state


def _refuse_unverifiable(path: Path) -> dict[str, Any]:
    """A file without the header: a checkpoint from before the digest, or no checkpoint."""
    state = _torch_load(path, path)
    if isinstance(state, dict) and state.get("format") == UNVERIFIABLE_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has no digest (format {UNVERIFIABLE_FORMAT}, written before "
            "checkpoints carried one), so its content cannot be verified; start a new run"
        )
    raise CheckpointError(f"checkpoint {path} is corrupt or not an esper checkpoint")


def _torch_load(path: Path, source: Path | io.BytesIO) -> Any:
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        # torch's own messages suggest weights_only=False: not advice to give about a
        # file that failed to load safely.
        reason = type(error).__name__
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a checkpoint: {reason}"
        ) from None


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__
