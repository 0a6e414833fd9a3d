"""`OpenTelemetrySession`: one run's providers, hub sink and scrape endpoint, and their
bounded shutdown.

Shutdown bound: `shutdown(timeout_s)` flushes and shuts down traces, logs and metrics in
parallel on daemon threads and returns within `timeout_s` (default 10 s) plus a few
milliseconds, whatever the collector does; what is not exported by then is booked as
lost to the bound, and the abandoned exports are silenced (exporters.py), so that
nothing is printed after the run's summary. Each OTLP export attempt is bounded by the
exporter timeout, retries included. Each signal is shut down once: the span processor
exports its queue as it shuts down, and the metric reader's last collection is the final
metric export (flushing before shutting down exported metrics twice, the second time
after the exporter had been shut down). The providers are built with
`shutdown_on_exit=False`: their own atexit hooks would wait up to 30 s each, unbounded by
this; the session is the owner that shuts them down.
"""

from __future__ import annotations

import logging
import threading
import time

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from prometheus_client import CollectorRegistry

from instrumentation.otel.accounting import CUT_SHORT, ExportAccounts, ExportReport
from instrumentation.otel.adapter import OpenTelemetrySink
from instrumentation.otel.global_provider import (
    install_meter_provider,
    install_tracer_provider,
    release_tracer_provider,
)
from instrumentation.otel.prometheus import PrometheusEndpoint
from instrumentation.otel.sink_errors import HubLike, SinkErrors

_log = logging.getLogger(__name__)

DEFAULT_SHUTDOWN_TIMEOUT_S = 10.0


class OpenTelemetrySession:
    """One run's OpenTelemetry: providers, the hub sink, Prometheus endpoint, shutdown.

    Built by `configure_opentelemetry`. When the SDK is disabled every provider is None
    and `sink` is None; `shutdown` is then a no-op. `span_limits` are the limits the
    tracer provider holds every span to (None when disabled). `logger_provider` is None
    unless some log exporter is configured.
    """

    def __init__(
        self,
        run_id: str,
        *,
        tracer_provider: TracerProvider | None = None,
        span_limits: SpanLimits | None = None,
        meter_provider: MeterProvider | None = None,
        logger_provider: LoggerProvider | None = None,
        sink: OpenTelemetrySink | None = None,
        sink_errors: SinkErrors | None = None,
        prometheus: PrometheusEndpoint | None = None,
        accounts: ExportAccounts | None = None,
    ) -> None:
        self.run_id = run_id
        self.tracer_provider = tracer_provider
        self.span_limits = span_limits
        self.meter_provider = meter_provider
        self.logger_provider = logger_provider
        self.sink = sink
        self.accounts = accounts or ExportAccounts()
        self.sink_errors = sink_errors or SinkErrors(self.accounts)
        self._prometheus = prometheus
        self._installed = False
        self._shut_down = False

    @property
    def enabled(self) -> bool:
        return self.tracer_provider is not None

    @property
    def prometheus_port(self) -> int | None:
        """The port actually serving /metrics (useful when 0 asked for any free one)."""
        return None if self._prometheus is None else self._prometheus.port

    @property
    def prometheus_registry(self) -> CollectorRegistry | None:
        return None if self._prometheus is None else self._prometheus.registry

    def export_report(self) -> ExportReport:
        """What each exporter sent and lost; final once `shutdown` has returned."""
        return self.accounts.report()

    def report_sink_errors(self, hub: HubLike) -> None:
        """Export `hub.sink_errors` in `esper_telemetry_sink_errors_total`, beside the
        export failures (the hub is built after the session, as it holds its sink)."""
        self.sink_errors.watch(hub)

    def install_globally(self) -> None:
        """Make this session's tracer provider the one `trace.get_tracer` proxies use
        (global_provider.py)."""
        install_tracer_provider(self.tracer_provider)
        if self.meter_provider is not None:
            install_meter_provider(self.meter_provider)
        self._installed = True

    def force_flush(self, timeout_ms: int) -> None:
        """Export the spans and log records queued so far, each within `timeout_ms`."""
        for provider in (self.tracer_provider, self.logger_provider):
            if provider is not None:
                provider.force_flush(timeout_ms)

    def abandon_export(self) -> None:
        """A signal ended the wait for the export (or came before it began): book every
        span, log record and metric export not yet sent as lost, cut short, and silence the exports
        still running, so that the summary printed next is final. Does nothing once a
        shutdown has finished its accounting."""
        self.accounts.shutdown_started()
        self.accounts.close(CUT_SHORT)

    def shutdown(self, timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S) -> bool:
        """Flush and shut down spans, log records and metrics within `timeout_s`; True if
        all finished.

        Safe to call twice (the second call returns True at once). Spans started after
        this are not recorded.
        """
        if self._shut_down:
            return True
        self._shut_down = True
        deadline = time.monotonic() + timeout_s
        if self._installed:
            release_tracer_provider(self.tracer_provider)
        self.accounts.shutdown_started()
        workers = [
            threading.Thread(target=job, args=(deadline,), name=f"esper-otel-{name}", daemon=True)
            for name, job in (
                ("traces", self._shutdown_traces),
                ("logs", self._shutdown_logs),
                ("metrics", self._shutdown_metrics),
                ("prometheus", self._shutdown_prometheus),
            )
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        finished = not any(worker.is_alive() for worker in workers)
        self.accounts.close()
        if not finished:
            _log.warning(
                "telemetry export did not finish within %.1fs; the rest is dropped", timeout_s
            )
        return finished

    @staticmethod
    def _remaining_ms(deadline: float) -> int:
        return max(0, int((deadline - time.monotonic()) * 1000))

    def _shutdown_traces(self, deadline: float) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()

    def _shutdown_logs(self, deadline: float) -> None:
        if self.logger_provider is not None:
            self.logger_provider.shutdown()

    def _shutdown_metrics(self, deadline: float) -> None:
        if self.meter_provider is not None:
            self.meter_provider.shutdown(self._remaining_ms(deadline))

    def _shutdown_prometheus(self, deadline: float) -> None:
        if self._prometheus is not None:
            self._prometheus.close()
