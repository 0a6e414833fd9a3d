"""Shared by the end-to-end telemetry tests: `esper train` in a child process with an
environment of our choosing, its stderr read line by line on a thread, and readers of the
JSONL log it writes. (Not in conftest.py: every test directory has a module of that name.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# Short PPO runs: two environments, two batches of 2 x 6 epochs; seed 0 is the default.
SHORT_RUN = ("--dataset", "synthetic", "--envs", "2", "--max-epochs", "6", "--no-progress")
# More episodes than any test lets run: the test stops it with a signal.
ENDLESS = ("--episodes", "100000")


def child_environment(otel: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any OTEL_* variable, plus `otel`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment.update(otel or {})
    return environment


def _default_sigint() -> None:
    # A child of a non-interactive shell's background job inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Training:
    """`python -m app train ARGS` running in a child process; stderr collected by a thread,
    with a wait for the first line that starts with a prefix."""

    def __init__(
        self, args: Sequence[str], cwd: Path, otel: Mapping[str, str] | None = None
    ) -> None:
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "train", *args],
            cwd=cwd,
            env=child_environment(otel),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_default_sigint,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def wait_for_line(self, prefix: str, timeout: float, after: int = -1) -> int:
        """The index of the first stderr line after line `after` that starts with `prefix`;
        fails after `timeout` seconds or when the process ends without printing it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(after + 1, len(self.lines)):
                    if self.lines[index].startswith(prefix):
                        return index
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no stderr line starting with {prefix!r} after {timeout}s "
                        f"(exit code {self.process.poll()}):\n{''.join(self.lines)}"
                    )
                self._changed.wait(min(left, 0.2))

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def stop(self) -> None:
        """Kill the child if it still runs (test teardown)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=10)


def only_run_dir(telemetry_dir: Path) -> Path:
    runs = list(telemetry_dir.glob("telemetry_*"))
    assert len(runs) == 1, f"expected one run directory under {telemetry_dir}, found {runs}"
    return runs[0]


def log_records(telemetry_dir: Path) -> list[dict[str, Any]]:
    """Every line of the run's events.jsonl, parsed (each must be a whole JSON line)."""
    text = (only_run_dir(telemetry_dir) / "events.jsonl").read_text(encoding="utf-8")
    assert text.endswith("\n"), "the last line of the log is incomplete"
    return [json.loads(line) for line in text.splitlines()]


def count_of(records: list[dict[str, Any]], event_type: str) -> int:
    return sum(record["event_type"] == event_type for record in records)
