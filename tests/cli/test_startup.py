"""`esper train` before training starts, in a child process: a CIFAR-10 data file that
would run code is refused without running it, and Ctrl-C or SIGTERM while torch or the
data set loads ends the process with one line and leaves nothing behind."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from signalled_runs import default_sigint

CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")


def write_cifar(root: Path, per_file: int) -> Path:
    """A CIFAR-10-shaped python folder (protocol 2, as the real files) under root."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in CIFAR_FILES:
        batch = {
            b"data": rng.integers(0, 256, size=(per_file, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, size=per_file).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


def start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "app", "train", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )


# --- a data file that would run code --------------------------------------------------------


class _System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


@pytest.mark.slow
def test_a_cifar_file_that_would_run_code_is_one_line_and_runs_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    folder = write_cifar(data_dir, per_file=4)
    marker = tmp_path / "code-ran"
    batch = {b"data": np.zeros((4, 3072), np.uint8), b"labels": _System(f"touch {marker}")}
    bad = folder / "data_batch_2"
    bad.write_bytes(pickle.dumps(batch, protocol=2))
    # The payload is live: a plain pickle.load in another process runs it.
    loads = f"import pickle; pickle.load(open({str(bad)!r}, 'rb'))"
    subprocess.run([sys.executable, "-c", loads], check=True, timeout=60)
    assert marker.exists()
    marker.unlink()

    args = ["--dataset", "cifar10", "--data-dir", str(data_dir), "--telemetry-dir", "t"]
    child = start(args, tmp_path)
    out, err = child.communicate(timeout=300)

    assert child.returncode == 2, err
    assert err == (
        f"esper: error: CIFAR-10 file {bad} is not a CIFAR-10 batch: it refers to "
        "'posix.system', which no CIFAR-10 batch does\n"
    )
    assert out == ""
    assert not marker.exists(), "code from the data file ran"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


# --- signals during start-up ----------------------------------------------------------------


def _maps_torch(pid: int) -> bool:
    """torch's library is mapped: the child is importing torch."""
    maps = Path(f"/proc/{pid}/maps").read_text(encoding="utf-8", errors="replace")
    return "libtorch" in maps


def _reads_data(folder: Path) -> Callable[[int], bool]:
    def reading(pid: int) -> bool:
        """The child has a data file open: it is loading the data set."""
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if fd.readlink().parent == folder:
                    return True
            except OSError:
                continue  # closed meanwhile
        return False

    return reading


def signal_when(child: subprocess.Popen[str], ready: Callable[[int], bool], signum: int) -> None:
    """Poll the child until `ready` holds, then send `signum`."""
    deadline = time.monotonic() + 120
    while True:
        assert child.poll() is None, f"exited first: {child.communicate()[1]}"
        assert time.monotonic() < deadline, "the child never reached the state"
        try:
            if ready(child.pid):
                break
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.002)
    child.send_signal(signum)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "line"),
    [
        (signal.SIGINT, 130, "esper: interrupted before training started\n"),
        (signal.SIGTERM, 143, "esper: terminated before training started\n"),
    ],
    ids=["SIGINT", "SIGTERM"],
)
@pytest.mark.parametrize("during", ["torch-import", "dataset"])
def test_a_signal_during_start_up_is_one_line_and_leaves_nothing_behind(
    tmp_path: Path, during: str, signum: int, code: int, line: str
) -> None:
    data_dir = tmp_path / "data"
    # Several MB, so that reading and converting it takes a while.
    folder = write_cifar(data_dir, per_file=1000)
    files = sorted((p.name, p.stat().st_size) for p in folder.iterdir())
    args = ["--dataset", "cifar10", "--data-dir", str(data_dir), "--episodes", "1"]
    args += ["--envs", "1", "--max-epochs", "2", "--telemetry-dir", "t", "--save", "ck.pt"]
    child = start(args, tmp_path)
    try:
        ready = _maps_torch if during == "torch-import" else _reads_data(folder)
        signal_when(child, ready, signum)
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()

    assert child.returncode == code, err
    assert err == line
    assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert sorted(p.name for p in data_dir.iterdir()) == ["cifar-10-batches-py"]
    assert sorted((p.name, p.stat().st_size) for p in folder.iterdir()) == files
