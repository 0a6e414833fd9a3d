"""OTEL_EXPORTER_OTLP_HEADERS and its per-signal variants, checked before anything starts.

The format (OTLP exporter specification): comma-separated `key=value` entries, values
URL-encoded. Both OTLP exporters parse these variables with the SDK's
`opentelemetry.util.re.parse_env_headers(text, liberal=True)`, which skips an entry it
cannot parse with a warning that quotes the entry, secret included, and sends the rest.
So each entry is given to that same parser here: what it accepts is accepted, anything
else stops the run with a message naming the variable and the entry's position (and its
key, when the key is well formed), never its value.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import unquote

from opentelemetry.util.re import parse_env_headers

from instrumentation.otel.errors import TelemetryConfigError

HEADER_VARIABLES = (
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
)
# The parser's own delimiter (opentelemetry/util/re.py): a comma with blanks around it.
_DELIMITER = re.compile(r"[ \t]*,[ \t]*")
_PARSER_LOG = logging.getLogger("opentelemetry.util.re")


class _Mute(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextmanager
def _parser_muted() -> Iterator[None]:
    """The parser warns with the rejected entry, value included: not while we check."""
    mute = _Mute()
    _PARSER_LOG.addFilter(mute)
    try:
        yield
    finally:
        _PARSER_LOG.removeFilter(mute)


def _accepted(entry: str) -> bool:
    with _parser_muted():
        return bool(parse_env_headers(entry, liberal=True))


def entries(text: str) -> list[str]:
    return [entry for entry in _DELIMITER.split(text) if entry]


def check_headers(variable: str, text: str) -> None:
    """Raise TelemetryConfigError for the first entry of text the SDK would skip."""
    found = entries(text)
    for position, entry in enumerate(found, start=1):
        if not _accepted(entry):
            raise TelemetryConfigError(_problem(variable, entry, position, len(found)))


def _problem(variable: str, entry: str, position: int, count: int) -> str:
    where = f"entry {position} of {count}"
    key, equals, _value = entry.partition("=")
    key = key.strip()
    if equals and key and _accepted(f"{key}=x"):
        return (
            f"{variable}: the value of header {key!r} ({where}) has characters that must be "
            "URL-encoded (%XX); the value is not shown"
        )
    return (
        f"{variable}: {where} is not key=value (format: key1=value1,key2=value2 with "
        "URL-encoded values); the entry is not shown"
    )


def check_header_variables(environ: Mapping[str, str] = os.environ) -> None:
    for variable in HEADER_VARIABLES:
        text = environ.get(variable, "")
        if text.strip():
            check_headers(variable, text)


def header_secrets(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Every header value of the variables, as written and as decoded (call after
    `check_header_variables`: each entry is then key=value)."""
    secrets: list[str] = []
    for variable in HEADER_VARIABLES:
        for entry in entries(environ.get(variable, "")):
            _key, _equals, value = entry.partition("=")
            value = value.strip()
            secrets += [value, unquote(value)]
            secrets += [token for token in unquote(value).split() if len(token) >= 8]
    return secrets
