"""What Ctrl-C (SIGINT) and SIGTERM do to `esper train`, phase by phase.

- start-up (loading torch, the dataset and the checkpoint, building the trainer): the
  signal unwinds at once. Nothing has been written yet; `esper` prints one line and exits
  130 (143 for SIGTERM).
- training: the first signal asks the run to stop at the next epoch boundary, where no
  event is half-delivered to the sinks; a second one stops at once.
- flushing (closing the JSONL log and the console, which are local and fast): a signal
  is only noted, so that the log always ends whole.
- export (the bounded OpenTelemetry shutdown, which waits on the network): a signal now,
  or a second one noted before, abandons the wait. The export threads are daemons and end
  with the process; the summary says the export was cut short.
- report (`--report`, seconds on a long log): a signal now, or one that cut the export
  short, stops the report, which leaves no file; the summary follows.
- done (run.json and the summary, local and fast): signals are ignored.

A signal after training (one that cut the export short or stopped the report) makes the
exit code the signal's, as if it had stopped the run.

Only stdlib is imported here: `python -m app` uses this module before torch is loaded.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum, auto
from types import FrameType

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
# What each command does, as "interrupted before ... started" names it; here because
# `python -m app` needs it before the command line loads.
ACTIVITIES = {"train": "training", "replay": "the replay", "report": "the report"}


class Terminated(BaseException):
    """SIGTERM arrived; unwinds like Ctrl-C so that every sink is flushed."""


class _ExportCutShort(BaseException):
    """A signal during the export wait; raised out of the wait and caught there."""


class Phase(Enum):
    STARTUP = auto()
    TRAINING = auto()
    FLUSHING = auto()
    EXPORTING = auto()
    REPORTING = auto()
    DONE = auto()


def raise_for(signum: int) -> None:
    """Unwind the way the signal asks: KeyboardInterrupt for SIGINT, Terminated for
    SIGTERM."""
    if signum == signal.SIGTERM:
        raise Terminated
    raise KeyboardInterrupt


def signal_of(interrupt: BaseException) -> int:
    return signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT


def interrupted_before_start(interrupt: BaseException, activity: str = "training") -> int:
    """Report a signal that arrived before `activity` started, in one line; the exit
    code."""
    return announce_interrupt(interrupt, f"before {activity} started")


def announce_interrupt(interrupt: BaseException, when: str) -> int:
    """Report a signal that stopped a command, in one line (`esper: interrupted WHEN`,
    `terminated` for SIGTERM); the exit code."""
    print(f"esper: {verb_of(interrupt)} {when}", file=sys.stderr)
    return EXIT_CODES[signal.Signals(signal_of(interrupt))]


def verb_of(interrupt: BaseException) -> str:
    """ "terminated" for SIGTERM, "interrupted" for Ctrl-C."""
    return "terminated" if signal_of(interrupt) == signal.SIGTERM else "interrupted"


class _Outcome:
    """What `call` returned or raised, run on another thread."""

    def __init__(self, call: Callable[[], bool]) -> None:
        self._call = call
        self._result: bool | None = None
        self._error: Exception | None = None

    def run(self) -> None:
        try:
            self._result = self._call()
        except Exception as error:  # raised again in the waiting thread
            self._error = error

    def result(self) -> bool | None:
        if self._error is not None:
            raise self._error
        return self._result


class StopRequest:
    """The signal handler of one `esper train`, following the phases above."""

    def __init__(self) -> None:
        self.phase = Phase.STARTUP
        self.signum: int | None = None  # the signal that stopped (or will stop) the run
        self.cut_short_by: int | None = None  # the signal that abandoned the export
        self.report_stopped_by: int | None = None  # the signal that stopped the report
        self._export_waited = False

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGINT and SIGTERM for the block, then restore the previous handlers.

        SIGXFSZ is ignored too: past a file size limit a write then fails with EFBIG,
        which a checkpoint save or a log reports, instead of killing the process.
        """
        signums = (signal.SIGINT, signal.SIGTERM)
        previous = {signum: signal.signal(signum, self.handle) for signum in signums}
        previous[signal.SIGXFSZ] = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        phase = self.phase
        if phase is Phase.STARTUP:
            raise_for(signum)
        elif phase is Phase.TRAINING:
            repeated = self.signum is not None
            self.signum = signum
            if repeated:
                self.cut_short_by = signum  # "at once": the export is not waited for
                raise_for(signum)
            print(
                "\nesper: stopping after this epoch (Ctrl-C again stops at once)",
                file=sys.stderr,
            )
        elif phase is Phase.FLUSHING:
            self.cut_short_by = signum
        elif phase is Phase.EXPORTING:
            self.cut_short_by = signum
            self.phase = Phase.DONE  # raise once, from inside the wait only
            raise _ExportCutShort
        elif phase is Phase.REPORTING:
            self.report_stopped_by = signum
            self.phase = Phase.DONE  # raise once, from inside the report only
            raise_for(signum)

    def start_training(self) -> None:
        """From now on a first signal stops the run at the next epoch boundary."""
        self.phase = Phase.TRAINING

    def raise_if_requested(self) -> None:
        """At an epoch boundary: stop there if a signal asked to."""
        if self.signum is not None:
            raise_for(self.signum)

    def flushing(self) -> None:
        """The local sinks are being closed: a signal must not cut that short."""
        self.phase = Phase.FLUSHING

    def wait_for_export(self, shutdown: Callable[[], bool]) -> bool | None:
        """Run `shutdown` (bounded by its own timeout) and wait for it, unless a signal
        cuts the wait short or already asked to stop at once. Returns what `shutdown`
        returned, or None when it was not waited for. Waits at most once per run."""
        if self._export_waited:
            return None
        self._export_waited = True
        outcome = _Outcome(shutdown)
        waiter = threading.Thread(target=outcome.run, name="esper-export-wait", daemon=True)
        try:
            self.phase = Phase.EXPORTING
            if self.cut_short_by is None:
                waiter.start()
                waiter.join()
            self.phase = Phase.DONE
        except _ExportCutShort:
            return None  # the handler has moved on to DONE
        return outcome.result() if self.cut_short_by is None else None

    @contextmanager
    def reporting(self) -> Iterator[None]:
        """Inside, a signal unwinds once (KeyboardInterrupt or Terminated), to stop the
        report; one that cut the export short stops it on entry."""
        self.phase = Phase.REPORTING
        try:
            if self.cut_short_by is not None:
                self.report_stopped_by = self.cut_short_by
                raise_for(self.cut_short_by)
            yield
        finally:
            self.phase = Phase.DONE

    def summary_lines(self) -> list[str]:
        """The summary's word on a cut-short export; none when it was waited for."""
        if self.cut_short_by is None:
            return []
        name = _NAMES[signal.Signals(self.cut_short_by)]
        return [
            f"  cut short: the OpenTelemetry export, by {name}; spans and metrics not yet "
            "sent are lost"
        ]

    def exit_code(self, code: int) -> int:
        """The run's exit code: `code`, or the code of the signal that cut the export
        short or stopped the report when the run had not already stopped for a signal."""
        late = self.cut_short_by if self.cut_short_by is not None else self.report_stopped_by
        if late is None or code in EXIT_CODES.values():
            return code
        return EXIT_CODES[signal.Signals(late)]
