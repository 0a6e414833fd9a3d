"""An endless `esper train` in a child process, given signals at the lines of its stderr
that cue them (its first PPO update, say): what stopped runs and resumed runs are tested
with."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Cue:
    """Send `signum` once stderr shows a line holding `text`, after `before` ran."""

    text: str
    signum: int = signal.SIGINT
    before: Callable[[], None] | None = None


def default_sigint() -> None:
    # A child of a non-interactive shell's background job inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signalled_after_first_update(
    args: list[str],
    cwd: Path,
    signum: int = signal.SIGINT,
    before_signal: Callable[[], None] | None = None,
) -> tuple[int, str]:
    """`python -m app train ARGS` given `signum` once it printed its first PPO update
    (and `before_signal` ran); its exit code and stderr."""
    return signalled_at(args, cwd, [Cue("ppo update", signum, before_signal)])


def signalled_at(args: list[str], cwd: Path, cues: Sequence[Cue]) -> tuple[int, str]:
    """`python -m app train ARGS` given each cue's signal at its line, in order, the
    moment the line is read; its exit code and stderr."""
    child = subprocess.Popen(
        [sys.executable, "-m", "app", "train", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    lines: list[str] = []
    errors: list[BaseException] = []
    signalled = threading.Event()

    def read() -> None:
        assert child.stderr is not None
        waiting = list(cues)
        for line in child.stderr:
            lines.append(line)
            if waiting and waiting[0].text in line:
                cue = waiting.pop(0)
                try:
                    if cue.before is not None:
                        cue.before()
                    child.send_signal(cue.signum)
                except BaseException as error:  # raised again in the test's thread
                    errors.append(error)
                    waiting.clear()
                if not waiting:
                    signalled.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert signalled.wait(timeout=120), "".join(lines)
        if errors:
            raise errors[0]
        code = child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    reader.join(timeout=10)
    return code, "".join(lines)
