"""The trainer image's entry point script, run with `sh` against stand-ins for `esper` and
`torchrun` that report how they were started."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "trainer-entrypoint.sh"
# Prints its own pid first (the script's, if the script exec'd it), then its name and argv.
FAKE = r"""#!/bin/sh
printf '%s\0' "$$" "${0##*/}" "$@"
"""
# One argument with a space: "$@" must hand each argument over unsplit.
ARGS = ["--envs=4", "--telemetry-dir=/var/lib/esper/telemetry", "--dataset=two words"]


def _run(tmp_path: Path, nproc: str | None) -> tuple[subprocess.CompletedProcess[bytes], int]:
    """Run the script; the result, and its process id."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("esper", "torchrun"):
        fake = bin_dir / name
        fake.write_text(FAKE)
        fake.chmod(0o755)
    # Only the stand-ins on PATH, so the real esper or torchrun can never answer.
    env = {"PATH": str(bin_dir)}
    if nproc is not None:
        env["ESPER_NPROC"] = nproc
    process = subprocess.Popen(
        ["/bin/sh", str(SCRIPT), *ARGS],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = process.communicate(timeout=30)
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return result, process.pid


def _started(result: subprocess.CompletedProcess[bytes], pid: int) -> list[str]:
    assert result.returncode == 0, result.stderr.decode()
    fields = result.stdout.decode().split("\0")
    assert fields[-1] == ""
    assert fields[0] == str(pid), "the script ran the command as a child instead of exec'ing it"
    return fields[1:-1]


@pytest.mark.parametrize("nproc", [None, "1"])
def test_one_process_runs_esper_train(tmp_path: Path, nproc: str | None) -> None:
    result, pid = _run(tmp_path, nproc)
    assert _started(result, pid) == ["esper", "train", *ARGS]


@pytest.mark.parametrize("nproc", ["2", "16"])
def test_more_processes_run_torchrun(tmp_path: Path, nproc: str) -> None:
    result, pid = _run(tmp_path, nproc)
    assert _started(result, pid) == [
        "torchrun",
        "--standalone",
        "--nproc-per-node",
        nproc,
        "-m",
        "app",
        "train",
        *ARGS,
    ]


@pytest.mark.parametrize("nproc", ["0", "-1", "two", "", "01", "1.5", " 2"])
def test_a_count_that_is_not_a_positive_integer_is_refused(tmp_path: Path, nproc: str) -> None:
    result, _ = _run(tmp_path, nproc)
    assert result.returncode == 2
    assert result.stdout == b"", "something was started"
    error = result.stderr.decode()
    assert "ESPER_NPROC" in error
    assert f"'{nproc}'" in error


def test_the_script_names_its_interpreter() -> None:
    # The image's exec-form ENTRYPOINT starts the script itself, with no shell in front.
    assert SCRIPT.read_text().startswith("#!/bin/sh\n")
