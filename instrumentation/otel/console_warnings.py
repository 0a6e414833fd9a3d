"""The OpenTelemetry SDK's and exporters' warnings as console lines, one per problem.

Left to Python's default handler, an exporter that cannot reach its collector prints a
record per retry from its export thread, straight through the progress bar. While
`warnings_to(write)` is active, the records of the `opentelemetry` and `grpc` loggers, and
of Esper's own wrappers of them (`instrumentation.otel`), go to `write` instead, as
`esper: warning: <message>`, secrets redacted (redaction.py), each problem once.
`esper train` and `esper replay` run under `warnings_below_the_bar`, which writes them
with tqdm, as the console sink writes its lines: tqdm clears the bar, prints the line
whole and redraws the bar, under the lock its bars draw under. Under torchrun each
process has its exporters, and its lines, of its own: they end with `(rank N)`.

The key of a problem:

- a record logged during an export attempt (failures.py) is the problem of that exporter
  and the collector's answer: the sink (`otlp_traces`, ...) and the status read from the
  exporter (`UNAVAILABLE`, `HTTP 503`, `connection refused`). The retries of an attempt
  differ only in their delay, and the "Failed to export" that ends it names the same
  answer: one line. Another signal or another answer is another problem. What the failed
  exports lost is counted in the summary's `export:` line.
- any other record is keyed by its logger and its message with the numbers normalised
  (delays, sizes, object addresses), so that repeats collapse while other wordings stay.

The records reach neither the root logger's handlers nor Python's last-resort handler
while it is active (the loggers stop propagating); what they were is restored afterwards.
The SDK's own DuplicateFilter still drops, before this sees it, a record whose template
repeats the previous one of the same module within 20 s.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from tqdm import tqdm

from instrumentation.otel import failures
from instrumentation.otel.redaction import redact

PREFIX = "esper: warning: "
LOGGERS = ("opentelemetry", "grpc", "instrumentation.otel")
_NUMBER = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?")
P = ParamSpec("P")
R = TypeVar("R")


def problem_of(record: logging.LogRecord) -> tuple[str, ...]:
    """The key under which a record is printed once (module docstring)."""
    attempt = failures.current_attempt()
    if attempt is not None and attempt.status is not None:
        return ("export", attempt.ledger.sink, attempt.status)
    return ("record", record.name, _NUMBER.sub("#", record.getMessage()))


class WarningLines(logging.Handler):
    """Writes the first record of each problem as one `esper: warning:` line."""

    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self._write = write
        self._seen: set[tuple[str, ...]] = set()

    def emit(self, record: logging.LogRecord) -> None:
        # Handler.handle holds the handler's lock: records of several export threads
        # are checked and written one at a time.
        try:
            problem = problem_of(record)
            if problem in self._seen:
                return
            self._seen.add(problem)
            message = " ".join(redact(record.getMessage()).split())
            self._write(PREFIX + message)
        except Exception:
            self.handleError(record)


@contextmanager
def warnings_to(write: Callable[[str], None]) -> Iterator[WarningLines]:
    """Route the LOGGERS' warnings to `write` as `WarningLines` while the block runs."""
    handler = WarningLines(write)
    loggers = [logging.getLogger(name) for name in LOGGERS]
    propagating = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    try:
        yield handler
    finally:
        for logger, propagate in zip(loggers, propagating, strict=True):
            logger.removeHandler(handler)
            logger.propagate = propagate


def below_the_bar(line: str) -> None:
    """Print `line` on stderr below any progress bar, as the console sink does."""
    tqdm.write(line, file=sys.stderr)


def of_this_rank(write: Callable[[str], None]) -> Callable[[str], None]:
    """`write`, naming the process's rank after each line under torchrun, where every
    rank exports, and warns, on its own (as the summary names each rank's lines)."""
    rank, size = os.environ.get("RANK", ""), os.environ.get("WORLD_SIZE", "1")
    if not (rank.isdigit() and size.isdigit() and int(size) > 1):
        return write
    return lambda line: write(f"{line} (rank {rank})")


def warnings_below_the_bar(command: Callable[P, R]) -> Callable[P, R]:
    """`command` (`esper train`, `esper replay`) with its process's warnings written below
    the progress bar from its start to its end."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with warnings_to(of_this_rank(below_the_bar)):
            return command(*args, **kwargs)

    return run
