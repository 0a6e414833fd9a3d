"""`python -m app` and the `esper` script: the command line, loaded under a guard.

Importing the command line loads torch, which takes seconds; Ctrl-C or SIGTERM then
gets one line and exit 130 or 143, as it does later in start-up, not a traceback.
"""

import signal
import sys

from app.interrupts import Terminated, interrupted_before_start, raise_for

_ACTIVITIES = {"train": "training", "replay": "the replay"}


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: raise_for(signum))
    try:
        from app.cli import main as cli_main
    except (KeyboardInterrupt, Terminated) as interrupt:
        return interrupted_before_start(interrupt, _ACTIVITIES.get(command, "the command"))
    finally:
        signal.signal(signal.SIGTERM, previous)
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
