"""OpenTelemetry for Esper: SDK setup, the event-to-OTel sink and the metrics
(docs/opentelemetry.md).

`app/` imports only the OpenTelemetry API; everything that needs the SDK lives here.
"""

from instrumentation.otel.adapter import OpenTelemetrySink, current_span_ids
from instrumentation.otel.errors import TelemetryConfigError
from instrumentation.otel.session import DEFAULT_SHUTDOWN_TIMEOUT_S, OpenTelemetrySession
from instrumentation.otel.setup import configure_opentelemetry

__all__ = [
    "DEFAULT_SHUTDOWN_TIMEOUT_S",
    "OpenTelemetrySession",
    "OpenTelemetrySink",
    "TelemetryConfigError",
    "configure_opentelemetry",
    "current_span_ids",
]
