"""Why an OTLP export failed, read from the exporter's own log records.

The OTLP exporters return only SUCCESS or FAILURE; the collector's answer is in the
records they log while exporting, on the exporting thread:

- gRPC: `Transient error %s encountered while exporting %s to %s, ...` and `Failed to
  export %s to %s, error code: %s, ...`, with a `grpc.StatusCode` argument;
- HTTP: `Failed to export %s batch code: %s, reason: %s` (the status code, or the
  connection error), `Transient error %s encountered while exporting %s batch, ...`
  (the response's reason phrase, or the connection error), then `Failed to export %s
  batch due to timeout, max retries or shutdown.` without a status (alone when the
  first retry would not fit in the export timeout);
- both: `Shutdown in progress, aborting retry.` when shutdown interrupts a retry.

The HTTP exporter logs the cause of a retried failure only when the retry fits in the
export timeout (else just "due to timeout, max retries or shutdown"): so the OTLP/HTTP
exporters are given a requests session (`http_session`, a constructor argument of
theirs; requests is their transport) whose adapter notes how each attempt ended.

`ExportAttempt` marks the current thread as exporting for a ledger; a filter on the
exporter's loggers notes the last status seen. The filter is put first on those loggers,
ahead of the SDK's DuplicateFilter, which would otherwise hide from it a record that
repeats the previous one's template. An error the HTTP client raises on its own
arguments, before anything is sent, does not replace an answer already seen: once the
export timeout is spent the exporter retries with a zero timeout, which urllib3 refuses
with a ValueError, and the collector's 503 before it is the cause worth reporting.
Once the ledger is closed (the shutdown bound was
reached and the summary counted the export as lost) the filter drops the abandoned
export's records, so that nothing is printed after the summary.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any

from requests import PreparedRequest, Response, Session
from requests.adapters import HTTPAdapter

from instrumentation.otel.accounting import SHUTDOWN_BOUND, SinkLedger, export_failed
from instrumentation.otel.redaction import redact

_PHRASES = {status.phrase: status.value for status in HTTPStatus}
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_ABORTED = "Shutdown in progress, aborting retry."
_TOO_LARGE = "max_request_size"
_CREDENTIAL_PROVIDERS = (
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_{signal}_CREDENTIAL_PROVIDER",
)


class ExportAttempt:
    """One export call on this thread: what its exporter logged about it."""

    def __init__(self, ledger: SinkLedger) -> None:
        self.ledger = ledger
        self.status: str | None = None
        self.aborted = False

    def note(self, status: str, answered: bool = True) -> None:
        """Keep how the attempt ended; a status that nothing `answered` (a local refusal)
        only while no answer has been kept."""
        if answered or self.status is None:
            self.status = status

    def failure_reason(self) -> str:
        if self.aborted:
            return SHUTDOWN_BOUND
        return export_failed(self.status or "no status reported")


_current = threading.local()


@contextmanager
def attempt(ledger: SinkLedger) -> Iterator[ExportAttempt]:
    """Mark the calling thread as exporting for ledger while the block runs."""
    previous: ExportAttempt | None = getattr(_current, "attempt", None)
    current = ExportAttempt(ledger)
    _current.attempt = current
    try:
        yield current
    finally:
        _current.attempt = previous


def current_attempt() -> ExportAttempt | None:
    """The export attempt running on the calling thread, if any."""
    current: ExportAttempt | None = getattr(_current, "attempt", None)
    return current


def describe_error(error: BaseException) -> str:
    """A short, secret-free name for a connection error: the OS's reason when the
    message carries an errno (`connection refused`), else the error's type."""
    text = str(error)
    match = _ERRNO.search(text)
    if match:
        return match[1].strip().lower()
    if "timeout" in type(error).__name__.lower() or "timed out" in text.lower():
        return "timed out"
    return type(error).__name__


def _is_answer(error: BaseException) -> bool:
    """Whether `error` says how the collector or the connection answered, rather than
    the client refusing its own arguments before sending anything."""
    return not isinstance(error, (ValueError, TypeError))


def status_of(record: logging.LogRecord) -> tuple[str, bool] | None:
    """The answer that an exporter's record reports, if it reports one, and whether it is
    an answer (see `_is_answer`)."""
    if not isinstance(record.msg, str):
        return None
    if _TOO_LARGE in record.msg:
        return "request larger than max_request_size", True
    arguments = record.args if isinstance(record.args, tuple) else ()
    for argument in arguments:
        status = _status(argument)
        if status is not None:
            return redact(status), not isinstance(argument, BaseException) or _is_answer(argument)
    return None


def _status(argument: object) -> str | None:
    if isinstance(argument, enum.Enum) and type(argument).__module__.startswith("grpc"):
        return argument.name  # grpc.StatusCode
    if isinstance(argument, int) and not isinstance(argument, bool) and 100 <= argument < 600:
        return f"HTTP {argument}"
    if isinstance(argument, str) and argument in _PHRASES:
        return f"HTTP {_PHRASES[argument]}"
    if isinstance(argument, BaseException):
        return describe_error(argument)
    return None


class _FailureFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        current: ExportAttempt | None = getattr(_current, "attempt", None)
        if current is None:
            return True
        if current.ledger.closed:
            return False
        if record.msg == _ABORTED:
            current.aborted = True
        status = status_of(record)
        if status is not None:
            current.note(*status)
        return True


_FILTER = _FailureFilter()


def watch(exporter: object) -> None:
    """Read the failures that exporter logs: the filter goes on the logger of every
    OpenTelemetry exporter module its class comes from."""
    for cls in type(exporter).__mro__:
        if cls.__module__.startswith("opentelemetry.exporter."):
            logger = logging.getLogger(cls.__module__)
            if _FILTER not in logger.filters:
                # First, ahead of the SDK's DuplicateFilter (module docstring).
                logger.filters.insert(0, _FILTER)


class _NotingAdapter(HTTPAdapter):
    """Notes on the exporting thread how each HTTP attempt ended: error status or error."""

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        try:
            response = super().send(request, *args, **kwargs)
        except Exception as error:
            _note(describe_error(error), _is_answer(error))
            raise
        if response.status_code >= 400:
            _note(f"HTTP {response.status_code}")
        return response


def _note(status: str, answered: bool = True) -> None:
    current: ExportAttempt | None = getattr(_current, "attempt", None)
    if current is not None:
        current.note(status, answered)


def http_session(signal: str, environ: Mapping[str, str] = os.environ) -> Session | None:
    """A requests session for the OTLP/HTTP exporter of signal ("traces", "metrics", "logs")
    that notes how each attempt ended; None when a credential provider is configured,
    whose session the exporter loads itself (statuses then come from its log records)."""
    names = [name.format(signal=signal.upper()) for name in _CREDENTIAL_PROVIDERS]
    if any(environ.get(name, "").strip() for name in names):
        return None
    session = Session()
    adapter = _NotingAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
