"""Secrets of the OTLP configuration never reach the terminal.

The secrets are the header values of OTEL_EXPORTER_OTLP_HEADERS and its per-signal
variants (as written and URL-decoded) and the user info of the endpoint URLs
(`http://user:password@host`). The gRPC exporter, for one, names its target, user info
included, in every retry warning. So:

- `redact(text)` replaces every known secret with `***`, and the user info of any URL;
- `RedactingFilter` does that to each log record it sees (message, arguments, the
  formatted exception), and `protect_logging` puts it on every handler there is (the
  root logger's, each logger's own) and on `logging.lastResort`, the handler Python
  uses when none is configured, as in the CLI: a handler sees every record it prints,
  propagated ones included, whichever library logged it.

A handler added after `protect_logging` ran is not covered; Esper's own
(console_warnings.py) redacts what it prints itself.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from urllib.parse import unquote, urlsplit

from instrumentation.otel.errors import TelemetryConfigError

REDACTED = "***"
ENDPOINT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
)
# Secrets shorter than this are replaced only where they stand alone, so that a header
# value such as "1" does not blank out every digit of every message.
_SHORT = 6
_URL_USERINFO = re.compile(r"(?<=://)[^/\s@'\"]+@")


class Redactor:
    """Replaces known secrets in text; secrets can be added at any time (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._secrets.update(secret for secret in secrets if secret.strip())
            self._pattern = _pattern(self._secrets)

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        return _URL_USERINFO.sub(f"{REDACTED}@", text)


def _pattern(secrets: set[str]) -> re.Pattern[str] | None:
    if not secrets:
        return None
    alternatives = [
        re.escape(secret) if len(secret) >= _SHORT else rf"(?<![\w.-]){re.escape(secret)}(?![\w.-])"
        for secret in sorted(secrets, key=len, reverse=True)
    ]
    return re.compile("|".join(alternatives))


REDACTOR = Redactor()


def redact(text: str) -> str:
    """text without any secret of the OTLP configuration."""
    return REDACTOR.redact(text)


def endpoint_secrets(environ: Mapping[str, str]) -> list[str]:
    """The user info of each configured endpoint URL, as written and decoded."""
    secrets: list[str] = []
    for variable in ENDPOINT_VARIABLES:
        try:
            netloc = urlsplit(environ.get(variable, "").strip()).netloc
        except ValueError:  # e.g. an unclosed IPv6 bracket; the value may hold credentials
            raise TelemetryConfigError(
                f"{variable} is not a valid URL; the value is not shown"
            ) from None
        userinfo, at, _host = netloc.rpartition("@")
        if at and userinfo:
            # As written, decoded, and as HTTP basic authentication sends it.
            basic = base64.b64encode(unquote(userinfo).encode()).decode()
            secrets += [userinfo, unquote(userinfo), basic]
            _user, colon, password = userinfo.partition(":")
            if colon and password:
                secrets += [password, unquote(password)]
    return secrets


class RedactingFilter(logging.Filter):
    """Rewrites a record's message and exception text without secrets; drops nothing."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: the handler reports it as it would
            return True
        cleaned = self._redactor.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._redactor.redact(record.stack_info)
        return True


_FILTER = RedactingFilter(REDACTOR)


def protect_logging(secrets: Iterable[str]) -> None:
    """Add secrets to the redactor and put its filter on every handler there is."""
    REDACTOR.add(secrets)
    handlers: list[logging.Handler] = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            handlers += logger.handlers
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
