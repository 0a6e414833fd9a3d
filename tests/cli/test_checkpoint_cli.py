"""`esper train --save/--resume` end to end: a damaged or unsound checkpoint is one line and
exit 2 before anything is written, and a full disk costs checkpoints, never the run."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from app.cli import main
from app.cli.errors import INCOMPLETE_OUTPUT
from app.training.checkpoint import UNVERIFIABLE_FORMAT, load_checkpoint, save_checkpoint

SYNTHETIC = ("--dataset", "synthetic", "--envs", "2", "--max-epochs", "3", "--no-progress")


pytestmark = pytest.mark.usefixtures("in_process_run_state")


def esper_here(args: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`app.cli.main(ARGS)` in this process; the exit code and stderr."""
    code = main(list(args))
    return code, capsys.readouterr().err


def esper(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m app ARGS` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A real checkpoint after 2 of 4 episodes (one batch of two environments)."""
    path = tmp_path / "ck.pt"
    args = ["train", *SYNTHETIC, "--episodes", "2", "--save", str(path)]
    code, err = esper_here([*args, "--telemetry-dir", str(tmp_path / "first")], capsys)
    assert code == 0, err
    return path


def resume_refused(
    capsys: pytest.CaptureFixture[str], path: Path, telemetry_dir: Path, *extra: str
) -> str:
    """Resume from `path`: the one line it is refused with (exit 2, nothing written)."""
    args = ["train", *SYNTHETIC, "--episodes", "4", "--resume", str(path), *extra]
    code, err = esper_here([*args, "--telemetry-dir", str(telemetry_dir)], capsys)
    assert code == 2, err
    (line,) = err.splitlines()
    assert not telemetry_dir.exists(), "telemetry written for a refused resume"
    return line


# --- damaged and unsound checkpoints -------------------------------------------------------


@pytest.mark.slow
def test_resume_from_changed_tensor_bytes_is_refused_in_one_line(
    tmp_path: Path, checkpoint: Path
) -> None:
    data = checkpoint.read_bytes()
    network = load_checkpoint(checkpoint)["agent"]["network"]
    name = max(network, key=lambda key: network[key].numel())
    raw = network[name].numpy().tobytes()
    start = data.find(raw)
    assert start > 0 and data.find(raw, start + 1) < 0, "tensor bytes not found once"
    for offset in (start, start + len(raw) // 2, start + len(raw) - 1):
        damaged = bytearray(data)
        damaged[offset] ^= 0x01
        checkpoint.write_bytes(bytes(damaged))
        telemetry_dir = tmp_path / f"t{offset}"
        args = ["train", *SYNTHETIC, "--episodes", "4", "--resume", str(checkpoint)]
        done = esper([*args, "--telemetry-dir", str(telemetry_dir)], cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stderr == (
            f"esper: error: checkpoint {checkpoint} is corrupt: its content does not match "
            "its sha256 digest\n"
        )
        assert not telemetry_dir.exists()
    # The undamaged file still resumes.
    checkpoint.write_bytes(data)
    args = ["train", *SYNTHETIC, "--episodes", "4", "--resume", str(checkpoint)]
    done = esper([*args, "--telemetry-dir", str(tmp_path / "ok")], cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_resume_from_a_checkpoint_without_digest_is_refused(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.pt"
    torch.save({"format": UNVERIFIABLE_FORMAT, **load_checkpoint(checkpoint)}, old)
    line = resume_refused(capsys, old, tmp_path / "t")
    assert line.startswith(f"esper: error: checkpoint {old} has no digest")


@pytest.mark.parametrize(
    ("field", "value", "complaint"),
    [
        ("batches_completed", -1, "batches_completed is -1, not a non-negative integer"),
        ("episodes_completed", 3, "episodes_completed is 3, but 1 batches of 2 environments"),
        ("accuracies", [float("nan")], "accuracies[0] is nan"),
        ("torch_rng", torch.zeros(7), "torch_rng is a torch.float32 tensor of shape [7]"),
    ],
)
def test_resume_from_an_unsound_field_names_the_checkpoint_and_the_field(
    tmp_path: Path,
    checkpoint: Path,
    capsys: pytest.CaptureFixture[str],
    field: str,
    value: Any,
    complaint: str,
) -> None:
    state = load_checkpoint(checkpoint)
    state[field] = value
    save_checkpoint(checkpoint, state)  # a valid digest over an unsound state
    line = resume_refused(capsys, checkpoint, tmp_path / "t")
    assert line.startswith(f"esper: error: checkpoint {checkpoint}: {complaint}"), line


def test_resume_from_an_agent_state_without_network_says_so(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = load_checkpoint(checkpoint)
    del state["agent"]["network"]
    save_checkpoint(checkpoint, state)
    line = resume_refused(capsys, checkpoint, tmp_path / "t")
    assert line == f"esper: error: checkpoint {checkpoint}: agent state is missing 'network'"


def test_resume_with_nothing_left_to_run_says_so(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--episodes", "1"]  # fewer than the 2 already done
    line = resume_refused(capsys, checkpoint, tmp_path / "t", *args)
    assert line == (
        f"esper: error: checkpoint {checkpoint} has completed 2 episodes, more than "
        "--episodes 1; nothing left to run (raise --episodes to continue)"
    )


# --- a full disk ----------------------------------------------------------------------------


def _file_size_limit(limit: int) -> Any:
    def limited() -> None:
        # As `esper train` does itself: past the limit a write fails with EFBIG.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        # A soft limit, which the test may lift again (as clearing a full disk would).
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return limited


class LimitedRun:
    """`esper train` in a child that cannot write files past `limit` bytes; stderr is
    read on a thread, so that a test can react to a line."""

    def __init__(self, args: Sequence[str], cwd: Path, limit: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "train", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_file_size_limit(limit),
        )
        self.lines: list[str] = []
        self.failed = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if line.startswith("esper: cannot save checkpoint"):
                self.failed.set()

    def wait(self) -> tuple[int, str]:
        try:
            code = self.process.wait(timeout=300)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self.reader.join(timeout=10)
        return code, "".join(self.lines)


def summary_of(err: str) -> str:
    return err[err.index("esper: training ") :]


def update_batches(telemetry_dir: Path) -> list[int]:
    """The batch of every PPO update in the run's log (rotated files included)."""
    (run_dir,) = telemetry_dir.glob("telemetry_*")
    batches = []
    for path in sorted(run_dir.glob("events.jsonl*"), reverse=True):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record["event_type"] == "PPO_UPDATE_COMPLETED":
                batches.append(record["data"]["batch"])
    return sorted(batches)


@pytest.mark.slow
def test_saves_that_no_longer_fit_keep_the_previous_checkpoint_and_the_run_goes_on(
    tmp_path: Path, checkpoint: Path
) -> None:
    before = checkpoint.read_bytes()
    limit = len(before) // 2  # the checkpoint no longer fits; the log rotates below it
    args = [*SYNTHETIC, "--episodes", "8", "--resume", str(checkpoint), "--save", str(checkpoint)]
    args += ["--telemetry-dir", str(tmp_path / "t"), "--telemetry-max-bytes", str(limit // 2)]
    code, err = LimitedRun(args, tmp_path, limit).wait()

    assert code == INCOMPLETE_OUTPUT, err
    assert "Traceback" not in err
    reports = [line for line in err.splitlines() if line.startswith("esper: cannot save")]
    assert reports == [
        f"esper: cannot save checkpoint {checkpoint} after batch 2: File too large; training "
        "continues, the previous checkpoint is kept, and the save is retried after each batch"
    ]
    summary = summary_of(err)
    assert summary.startswith("esper: training completed")
    assert "  episodes:  8 in 4 batches\n" in summary
    assert (
        f"  checkpoint: {checkpoint}, not saved by this run, 3 saves failed (File too large)"
        in summary
    )
    assert checkpoint.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt", "first", "t"]
    assert update_batches(tmp_path / "t") == [2, 3, 4]


@pytest.mark.slow
def test_a_save_that_fits_again_after_failures_ends_the_run_with_exit_0(
    tmp_path: Path, checkpoint: Path
) -> None:
    limit = checkpoint.stat().st_size // 2
    save = tmp_path / "new.pt"
    args = [*SYNTHETIC, "--episodes", "20", "--save", str(save)]
    args += ["--telemetry-dir", str(tmp_path / "t"), "--telemetry-max-bytes", str(limit // 2)]
    run = LimitedRun(args, tmp_path, limit)
    assert run.failed.wait(timeout=300), "".join(run.lines)
    started = time.monotonic()
    # Room again, as when a full disk is cleared: the next batch's save succeeds.
    unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    resource.prlimit(run.process.pid, resource.RLIMIT_FSIZE, unlimited)
    code, err = run.wait()

    assert code == 0, err
    summary = summary_of(err)
    assert summary.startswith("esper: training completed")
    line = next(line for line in summary.splitlines() if line.startswith("  checkpoint:"))
    assert line.startswith(f"  checkpoint: {save}, saved after batch 10, ")
    assert line.endswith(" failed (File too large)")
    failures = int(line.split(", ")[-1].split()[0])
    assert 1 <= failures < 10, f"the limit was lifted {time.monotonic() - started:.1f}s late"
    assert load_checkpoint(save)["batches_completed"] == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt", "first", "new.pt", "t"]
