"""How `esper` ends when it cannot do what it was asked: its exit codes and the error that
becomes one line, `esper: error: ...`."""

from __future__ import annotations

USAGE_ERROR = 2
# Training ran to its end (or its stop) but output it was asked to write is incomplete.
INCOMPLETE_OUTPUT = 3


class UsageError(Exception):
    """Bad input found before training starts; exits with code 2 and one line."""
