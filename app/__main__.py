"""`python -m app` and the `esper` script: the command line, loaded under a guard.

Ctrl-C or SIGTERM while the command line loads gets one line and exit 130 or 143, as it
does later in start-up, not a traceback. The command line itself is light; a command's
own modules (torch, the OpenTelemetry SDK) load when it runs, under the same kind of
guard (app/cli/lazy.py).
"""

import signal
import sys

from app.interrupts import ACTIVITIES, Terminated, interrupted_before_start, raise_for


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: raise_for(signum))
    try:
        from app.cli import main as cli_main
    except (KeyboardInterrupt, Terminated) as interrupt:
        return interrupted_before_start(interrupt, ACTIVITIES.get(command, "the command"))
    finally:
        signal.signal(signal.SIGTERM, previous)
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
