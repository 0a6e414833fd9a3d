"""The Prometheus scrape endpoint of `--prometheus-port`: an HTTP server on its own
thread serving a registry that a PrometheusMetricReader of the session fills, its
histogram buckets with exemplars in the OpenMetrics format (exemplars.py)."""

from __future__ import annotations

from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from opentelemetry.sdk.metrics.export import MetricReader
from prometheus_client import CollectorRegistry, start_http_server

from instrumentation.otel.errors import TelemetryConfigError


@dataclass(frozen=True)
class PrometheusEndpoint:
    server: WSGIServer
    registry: CollectorRegistry
    reader: MetricReader

    @property
    def port(self) -> int:
        """The port actually serving /metrics (useful when 0 asked for any free one)."""
        return self.server.server_port

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_prometheus(port: int, address: str) -> PrometheusEndpoint:
    """Serve /metrics on address:port; a TelemetryConfigError naming them if it cannot."""
    from instrumentation.otel.exemplars import ExemplarPrometheusReader

    registry = CollectorRegistry()
    try:
        server, _thread = start_http_server(port, addr=address, registry=registry)
    except OSError as error:
        raise TelemetryConfigError(
            f"cannot serve Prometheus metrics on {address}:{port}: {error}"
        ) from None
    reader = ExemplarPrometheusReader(registry)
    return PrometheusEndpoint(server, registry, reader)
