"""The OTEL_* variables that say where each signal goes, read and checked before anything
starts; a bad value is a `TelemetryConfigError` naming the variable.

- `OTEL_SDK_DISABLED=true`: nothing is installed, the session has no sink.
- `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER` / `OTEL_LOGS_EXPORTER`: comma lists
  of `otlp`, `console`, `none`. When unset, OTLP is on for a signal exactly when an
  endpoint is configured for it (`OTEL_EXPORTER_OTLP_ENDPOINT` or
  `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT`), so a plain local run creates no
  exporter and prints no export errors.
- `OTEL_EXPORTER_OTLP_PROTOCOL` and the per-signal `..._TRACES_PROTOCOL` /
  `..._METRICS_PROTOCOL` / `..._LOGS_PROTOCOL`: `grpc` or `http/protobuf`. The default
  is `http/protobuf`,
  the specification's default (the Python SDK's own auto-configuration keeps `grpc`
  for backward compatibility; set the variable when the collector only speaks gRPC).
- `OTEL_EXPORTER_OTLP_TIMEOUT` (and per signal): seconds, as the Python exporters read
  it; 5 s by default here instead of their 10 s, so a dead collector costs less.
- `OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT` / `OTEL_ATTRIBUTE_COUNT_LIMIT`: when neither is set,
  a span event may hold 256 attributes instead of the SDK's 128 (adapter.py says why);
  the other `OTEL_SPAN_*_LIMIT` variables are read by the SDK's `SpanLimits`. Likewise
  `OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT`: an event's log record carries the same
  attributes as its span event, so it gets the same 256 unless either variable is set.

Endpoints, headers, compression and certificates are read by the OTLP exporters
themselves; headers are checked in headers.py, the batching variables in batching.py.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from opentelemetry.sdk._logs import LogRecordLimits
from opentelemetry.sdk.trace import SpanLimits

from instrumentation.otel.errors import TelemetryConfigError

DEFAULT_EXPORT_TIMEOUT_S = 5.0
DEFAULT_PROTOCOL = "http/protobuf"
# Room for the largest span event, a DEBUG PPO update (~75 attributes; adapter.py).
EVENT_ATTRIBUTE_LIMIT = 256

Signal = Literal["traces", "metrics", "logs"]
PROTOCOLS = ("grpc", "http/protobuf")
EXPORTER_NAMES = ("otlp", "console", "none")

Number = TypeVar("Number", int, float)


def variable(name: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The variable's value without surrounding blanks; None when unset or blank."""
    return environ.get(name, "").strip() or None


def positive_number(
    name: str, text: str, parse: Callable[[str], Number], what: str, *, finite: bool = False
) -> Number:
    """`text`, the value of variable `name`, read by `parse` (`int`, `float`) and checked
    to be positive (and finite); `what` names the kind expected, e.g. "a whole number"."""
    try:
        value = parse(text)
    except ValueError:
        raise TelemetryConfigError(f"{name}={text!r} is not {what}") from None
    if (finite and not math.isfinite(value)) or value <= 0:
        requirement = "finite and positive" if finite else "positive"
        raise TelemetryConfigError(f"{name}={text!r} must be {requirement}")
    return value


def sdk_disabled() -> bool:
    return (variable("OTEL_SDK_DISABLED") or "").lower() == "true"


@dataclass(frozen=True)
class SignalExport:
    """Where one signal (traces, metrics or logs) goes, as the environment configures it."""

    signal: Signal
    exporters: frozenset[str]
    protocol: str
    timeout_s: float

    @classmethod
    def from_environment(cls, signal: Signal) -> SignalExport:
        upper = signal.upper()
        return cls(signal, _exporters(upper) - {"none"}, _protocol(upper), _timeout_s(upper))

    @property
    def otlp(self) -> bool:
        return "otlp" in self.exporters

    @property
    def console(self) -> bool:
        return "console" in self.exporters


def _exporters(upper: str) -> frozenset[str]:
    name = f"OTEL_{upper}_EXPORTER"
    listed = variable(name)
    if listed is None:
        endpoint = variable(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT") or variable(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return frozenset({"otlp"} if endpoint else ())
    exporters = frozenset(item.strip().lower() for item in listed.split(",") if item.strip())
    unknown = sorted(exporters - set(EXPORTER_NAMES))
    if unknown:
        hint = " (use --prometheus-port for a scrape endpoint)" if "prometheus" in unknown else ""
        raise TelemetryConfigError(
            f"{name}={listed!r}: unsupported {', '.join(unknown)}; "
            f"choose from {', '.join(EXPORTER_NAMES)}{hint}"
        )
    return exporters


def _protocol(upper: str) -> str:
    name = f"OTEL_EXPORTER_OTLP_{upper}_PROTOCOL"
    protocol = variable(name) or variable("OTEL_EXPORTER_OTLP_PROTOCOL") or DEFAULT_PROTOCOL
    if protocol not in PROTOCOLS:
        raise TelemetryConfigError(
            f"OTLP protocol {protocol!r} (from {name} or "
            f"OTEL_EXPORTER_OTLP_PROTOCOL) is not supported; choose {' or '.join(PROTOCOLS)}"
        )
    return protocol


def _timeout_s(upper: str) -> float:
    for name in (f"OTEL_EXPORTER_OTLP_{upper}_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        text = variable(name)
        if text is not None:
            return positive_number(name, text, float, "a number of seconds")
    return DEFAULT_EXPORT_TIMEOUT_S


def span_limits() -> SpanLimits:
    """The limits every span of the session is held to (module docstring)."""
    if variable("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT") or variable("OTEL_ATTRIBUTE_COUNT_LIMIT"):
        return SpanLimits()
    return SpanLimits(max_event_attributes=EVENT_ATTRIBUTE_LIMIT)


def log_record_limits() -> LogRecordLimits:
    """The limits every log record of the session is held to (module docstring)."""
    try:
        if variable("OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT") or variable(
            "OTEL_ATTRIBUTE_COUNT_LIMIT"
        ):
            return LogRecordLimits()
        return LogRecordLimits(max_log_record_attributes=EVENT_ATTRIBUTE_LIMIT)
    except ValueError as error:  # the SDK's message names the variable and its value
        raise TelemetryConfigError(str(error)) from None
