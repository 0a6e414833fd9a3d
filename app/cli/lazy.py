"""Commands whose modules load only when they run.

`esper train` needs torch and `esper replay` the OpenTelemetry SDK, which take seconds to
import; `esper`, `esper --version` and every `--help` need neither. A command's module is
imported when the command runs, under a guard: Ctrl-C or SIGTERM during that import gets
one line and exit 130 or 143, as later in start-up, not a traceback.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable
from dataclasses import dataclass

from app.interrupts import ACTIVITIES, Terminated, interrupted_before_start, raise_for

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class LazyCommand:
    """A command's handler, as `load` imports it; `activity` names what a signal during
    the import came before ("training": `esper: interrupted before training started`)."""

    activity: str
    load: Callable[[], Handler]

    def __call__(self, args: argparse.Namespace) -> int:
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: raise_for(signum))
        try:
            handler = self.load()
        except (KeyboardInterrupt, Terminated) as interrupt:
            return interrupted_before_start(interrupt, self.activity)
        finally:
            signal.signal(signal.SIGTERM, previous)
        return handler(args)


def _train_command() -> Handler:
    from app.cli.train import train_command

    return train_command


def _replay_command() -> Handler:
    from app.cli.replay import replay_command

    return replay_command


TRAIN = LazyCommand(ACTIVITIES["train"], _train_command)
REPLAY = LazyCommand(ACTIVITIES["replay"], _replay_command)
