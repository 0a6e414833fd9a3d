"""OpenTelemetry SDK setup: the one place that builds providers, exporters and readers.

`configure_opentelemetry(run_id)` reads the standard environment variables:

- `OTEL_SDK_DISABLED=true`: nothing is installed, the session has no sink.
- `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER`: comma lists of `otlp`, `console`,
  `none`. When unset, OTLP is on for a signal exactly when an endpoint is configured
  for it (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT`),
  so a plain local run creates no exporter and prints no export errors.
- `OTEL_EXPORTER_OTLP_PROTOCOL` and the per-signal `..._TRACES_PROTOCOL` /
  `..._METRICS_PROTOCOL`: `grpc` or `http/protobuf`. The default is `http/protobuf`,
  the specification's default (the Python SDK's own auto-configuration keeps `grpc`
  for backward compatibility; set the variable when the collector only speaks gRPC).
- Endpoints, headers, compression, certificates: read by the OTLP exporters themselves.
- `OTEL_EXPORTER_OTLP_TIMEOUT` (and per signal): seconds, as the Python exporters read
  it; 5 s by default here instead of their 10 s, so a dead collector costs less.
- `OTEL_EXPORTER_OTLP_HEADERS` (and per signal): checked before anything starts
  (headers.py); header values and endpoint user info are redacted from everything the
  process logs (redaction.py).
- `OTEL_METRIC_EXPORT_INTERVAL` (ms, default 60000), `OTEL_BSP_MAX_QUEUE_SIZE`,
  `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: checked here (batching.py); the other `OTEL_BSP_*`,
  `OTEL_SPAN_*_LIMIT`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`: by the SDK.
- `OTEL_TRACES_SAMPLER` / `_ARG`: decide which traces are exported, not what is
  measured: dropped spans are still recorded (sampling.py).

Never in the way of training: spans go through a BatchSpanProcessor (bounded
queue of OTEL_BSP_MAX_QUEUE_SIZE spans, export on its own thread), metrics through a
PeriodicExportingMetricReader (own thread). Every span and metric export is accounted
for (accounting.py): sent, or lost with its reason (export failed and the collector's
status, queue full, shutdown bound reached); the losses per exporter, and what span
limits dropped, are `esper_telemetry_sink_errors_total{sink="otlp_traces" |
"otlp_metrics" | "span_limits" | ...}` and the summary's `export:` line (summary.py).

Shutdown bound: `OpenTelemetrySession.shutdown(timeout_s)` flushes and shuts down
traces and metrics in parallel on daemon threads and returns within `timeout_s` (default
10 s) plus a few milliseconds, whatever the collector does; what is not exported by then
is booked as lost to the bound, and the abandoned exports are silenced (exporters.py), so
that nothing is printed after the run's summary. Each OTLP export attempt is bounded by
the exporter timeout, retries included. Each signal is shut down once: the span
processor exports its queue as it shuts down, and the metric reader's last collection is
the final metric export (flushing before shutting down exported metrics twice, the
second time after the exporter had been shut down).
The providers are built with `shutdown_on_exit=False`: their own atexit hooks would wait
up to 30 s each, unbounded by this; the session is the owner that shuts them down.

Global providers: the OpenTelemetry API lets a process set the global TracerProvider
once, and `trace.get_tracer()` proxies created at import time (as `app/` does) bind to
the first real provider for good. So the global is a `_RoutingTracerProvider`, set once
per process, that forwards to the tracer provider of the session installed now; a later
session (a second run in one process, every test) re-targets it. The global
MeterProvider is set once, to the first session's provider: `app/` uses no meters, and
Esper's instruments live on each session's own provider.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from wsgiref.simple_server import WSGIServer

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.util.types import Attributes
from prometheus_client import CollectorRegistry, start_http_server

import app
from app.contracts import telemetry_names as names
from instrumentation.otel import failures
from instrumentation.otel.accounting import ExportAccounts, ExportReport
from instrumentation.otel.adapter import OpenTelemetrySink
from instrumentation.otel.batching import QueueSettings, metric_export_interval_ms
from instrumentation.otel.errors import TelemetryConfigError as TelemetryConfigError
from instrumentation.otel.exporters import CountingMetricExporter
from instrumentation.otel.headers import check_header_variables, header_secrets
from instrumentation.otel.metrics import (
    METER_NAME,
    EsperInstruments,
    EsperMetrics,
    MetricState,
    SpanMetricsProcessor,
)
from instrumentation.otel.processor import AccountingSpanProcessor
from instrumentation.otel.redaction import endpoint_secrets, protect_logging
from instrumentation.otel.sampling import recording_sampler

_log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "esper-training"
DEFAULT_EXPORT_TIMEOUT_S = 5.0
DEFAULT_SHUTDOWN_TIMEOUT_S = 10.0
DEFAULT_PROTOCOL = "http/protobuf"
# Room for the largest span event, a DEBUG PPO update (~75 attributes; adapter.py).
EVENT_ATTRIBUTE_LIMIT = 256

Signal = Literal["traces", "metrics"]
PROTOCOLS = ("grpc", "http/protobuf")
EXPORTER_NAMES = ("otlp", "console", "none")
TRACES_SINK, METRICS_SINK = "otlp_traces", "otlp_metrics"
CONSOLE_TRACES_SINK, CONSOLE_METRICS_SINK = "console_traces", "console_metrics"


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def sdk_disabled() -> bool:
    return (_env("OTEL_SDK_DISABLED") or "").lower() == "true"


@dataclass(frozen=True)
class SignalExport:
    """Where one signal (traces or metrics) goes, as the environment configures it."""

    signal: Signal
    exporters: frozenset[str]
    protocol: str
    timeout_s: float

    @classmethod
    def from_environment(cls, signal: Signal) -> SignalExport:
        upper = signal.upper()
        variable = f"OTEL_{upper}_EXPORTER"
        listed = _env(variable)
        if listed is None:
            endpoint = _env(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT") or _env(
                "OTEL_EXPORTER_OTLP_ENDPOINT"
            )
            names = frozenset({"otlp"} if endpoint else ())
        else:
            names = frozenset(name.strip().lower() for name in listed.split(",") if name.strip())
            unknown = sorted(names - set(EXPORTER_NAMES))
            if unknown:
                hint = (
                    " (use --prometheus-port for a scrape endpoint)"
                    if "prometheus" in unknown
                    else ""
                )
                raise TelemetryConfigError(
                    f"{variable}={listed!r}: unsupported {', '.join(unknown)}; "
                    f"choose from {', '.join(EXPORTER_NAMES)}{hint}"
                )
        protocol_variable = f"OTEL_EXPORTER_OTLP_{upper}_PROTOCOL"
        protocol = (
            _env(protocol_variable) or _env("OTEL_EXPORTER_OTLP_PROTOCOL") or DEFAULT_PROTOCOL
        )
        if protocol not in PROTOCOLS:
            raise TelemetryConfigError(
                f"OTLP protocol {protocol!r} (from {protocol_variable} or "
                f"OTEL_EXPORTER_OTLP_PROTOCOL) is not supported; choose {' or '.join(PROTOCOLS)}"
            )
        return cls(signal, names - {"none"}, protocol, _timeout_s(upper))

    @property
    def otlp(self) -> bool:
        return "otlp" in self.exporters

    @property
    def console(self) -> bool:
        return "console" in self.exporters


def _timeout_s(upper: str) -> float:
    for variable in (f"OTEL_EXPORTER_OTLP_{upper}_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        text = _env(variable)
        if text is None:
            continue
        try:
            value = float(text)
        except ValueError:
            raise TelemetryConfigError(f"{variable}={text!r} is not a number of seconds") from None
        if value <= 0:
            raise TelemetryConfigError(f"{variable}={text!r} must be positive")
        return value
    return DEFAULT_EXPORT_TIMEOUT_S


def build_resource(run_id: str) -> Resource:
    """The resource of docs/opentelemetry.md; OTEL_SERVICE_NAME or a service.name in
    OTEL_RESOURCE_ATTRIBUTES replaces the default service name, the run id is ours."""
    from_environment = OTELResourceDetector().detect().attributes
    service_name = from_environment.get("service.name") or DEFAULT_SERVICE_NAME
    return Resource.create(
        {
            "service.name": service_name,
            "service.version": app.__version__,
            "service.instance.id": run_id,
            names.RUN_ID: run_id,
        }
    )


def _span_limits() -> SpanLimits:
    if _env("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT") or _env("OTEL_ATTRIBUTE_COUNT_LIMIT"):
        return SpanLimits()
    return SpanLimits(max_event_attributes=EVENT_ATTRIBUTE_LIMIT)


def otlp_span_exporter(export: SignalExport) -> SpanExporter:
    """The OTLP span exporter for the configured protocol; endpoint and headers come
    from the environment, read by the exporter."""
    if export.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter(timeout=export.timeout_s)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter(timeout=export.timeout_s, session=failures.http_session("traces"))


def otlp_metric_exporter(export: SignalExport) -> MetricExporter:
    if export.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter(timeout=export.timeout_s)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter(timeout=export.timeout_s, session=failures.http_session("metrics"))


class _RoutingTracer(trace.Tracer):
    """A tracer that starts spans on the current target provider's tracer of its name."""

    def __init__(self, router: _RoutingTracerProvider, args: tuple[Any, ...]) -> None:
        self._router = router
        self._args = args
        self._target: trace.TracerProvider | None = None
        self._tracer: trace.Tracer = trace.NoOpTracer()

    def _current(self) -> trace.Tracer:
        target = self._router.target
        if target is not self._target:
            tracer = trace.NoOpTracer() if target is None else target.get_tracer(*self._args)
            self._target, self._tracer = target, tracer
        return self._tracer

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        return self._current().start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    # contextlib's manager for the API's private async-capable one: same behaviour here.
    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        with self._current().start_as_current_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
            end_on_exit,
        ) as span:
            yield span


class _RoutingTracerProvider(trace.TracerProvider):
    """The process-wide TracerProvider: forwards to the installed session's provider."""

    def __init__(self) -> None:
        self.target: trace.TracerProvider | None = None

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        args = (instrumenting_module_name, instrumenting_library_version, schema_url, attributes)
        return _RoutingTracer(self, args)


_ROUTER = _RoutingTracerProvider()
_global_lock = threading.Lock()
_global_state = {"tracer_provider_set": False, "meter_provider_set": False}


def _install_tracer_provider(provider: TracerProvider | None) -> None:
    with _global_lock:
        if not _global_state["tracer_provider_set"]:
            trace.set_tracer_provider(_ROUTER)
            _global_state["tracer_provider_set"] = True
            if trace.get_tracer_provider() is not _ROUTER:
                _log.warning(
                    "another global TracerProvider was set before Esper's; "
                    "training spans go to that one, not to the configured exporters"
                )
        _ROUTER.target = provider


def _install_meter_provider(provider: MeterProvider) -> None:
    with _global_lock:
        if not _global_state["meter_provider_set"]:
            metrics.set_meter_provider(provider)
            _global_state["meter_provider_set"] = True


class HubLike(Protocol):
    """What the sink-error metric reads from the telemetry hub."""

    @property
    def sinks(self) -> Sequence[Any]: ...

    @property
    def sink_errors(self) -> Mapping[str, int]: ...


class SinkErrors:
    """The values of `esper_telemetry_sink_errors_total`: the hub's failures by sink
    (every sink of the hub, zero until it fails) plus the items each exporter lost and
    what span limits dropped (accounting.py)."""

    def __init__(self, accounts: ExportAccounts) -> None:
        self._accounts = accounts
        self._hub: HubLike | None = None

    def watch(self, hub: HubLike) -> None:
        self._hub = hub

    def __call__(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        hub = self._hub
        if hub is not None:
            errors = hub.sink_errors
            counts.update((sink.name, errors.get(sink.name, 0)) for sink in hub.sinks)
            counts.update(errors)
        for sink, items in self._accounts.counts().items():
            counts[sink] = counts.get(sink, 0) + items
        return counts


class OpenTelemetrySession:
    """One run's OpenTelemetry: providers, the hub sink, Prometheus endpoint, shutdown.

    Built by `configure_opentelemetry`. When the SDK is disabled every provider is None
    and `sink` is None; `shutdown` is then a no-op.
    """

    def __init__(
        self,
        run_id: str,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        sink: OpenTelemetrySink | None = None,
        sink_errors: SinkErrors | None = None,
        prometheus: tuple[WSGIServer, CollectorRegistry] | None = None,
        accounts: ExportAccounts | None = None,
    ) -> None:
        self.run_id = run_id
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
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
        return None if self._prometheus is None else self._prometheus[0].server_port

    @property
    def prometheus_registry(self) -> CollectorRegistry | None:
        return None if self._prometheus is None else self._prometheus[1]

    def export_report(self) -> ExportReport:
        """What each exporter sent and lost; final once `shutdown` has returned."""
        return self.accounts.report()

    def report_sink_errors(self, hub: HubLike) -> None:
        """Export `hub.sink_errors` in `esper_telemetry_sink_errors_total`, beside the
        export failures (the hub is built after the session, as it holds its sink)."""
        self.sink_errors.watch(hub)

    def install_globally(self) -> None:
        """Make this session's tracer provider the one `trace.get_tracer` proxies use."""
        _install_tracer_provider(self.tracer_provider)
        if self.meter_provider is not None:
            _install_meter_provider(self.meter_provider)
        self._installed = True

    def shutdown(self, timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S) -> bool:
        """Flush and shut down spans and metrics within `timeout_s`; True if all finished.

        Safe to call twice (the second call returns True at once). Spans started after
        this are not recorded.
        """
        if self._shut_down:
            return True
        self._shut_down = True
        deadline = time.monotonic() + timeout_s
        if self._installed and _ROUTER.target is self.tracer_provider:
            _ROUTER.target = None
        self.accounts.shutdown_started()
        workers = [
            threading.Thread(target=job, args=(deadline,), name=f"esper-otel-{name}", daemon=True)
            for name, job in (
                ("traces", self._shutdown_traces),
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

    def _shutdown_metrics(self, deadline: float) -> None:
        if self.meter_provider is not None:
            self.meter_provider.shutdown(self._remaining_ms(deadline))

    def _shutdown_prometheus(self, deadline: float) -> None:
        if self._prometheus is not None:
            server = self._prometheus[0]
            server.shutdown()
            server.server_close()


def _serve_prometheus(
    port: int, address: str
) -> tuple[WSGIServer, CollectorRegistry, MetricReader]:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    registry = CollectorRegistry()
    try:
        server, _thread = start_http_server(port, addr=address, registry=registry)
    except OSError as error:
        raise TelemetryConfigError(
            f"cannot serve Prometheus metrics on {address}:{port}: {error}"
        ) from None
    # Scope labels off: the series carry exactly the labels of docs/opentelemetry.md's table.
    reader = PrometheusMetricReader(scope_info_enabled=False, registry=registry)
    return server, registry, reader


def configure_opentelemetry(
    run_id: str,
    prometheus_port: int | None = None,
    *,
    prometheus_address: str = "0.0.0.0",
    install_globally: bool = True,
) -> OpenTelemetrySession:
    """Build this run's providers from the OTEL_* environment (see the module docstring).

    Raises TelemetryConfigError, naming the variable or the port, on bad configuration,
    before anything is started. `install_globally=False` leaves the global providers
    alone (tests that need no `app/` spans); `prometheus_port=0` picks a free port.
    """
    if sdk_disabled():
        session = OpenTelemetrySession(run_id)
        if install_globally:
            session.install_globally()
        return session
    check_header_variables()
    traces = SignalExport.from_environment("traces")
    metric_export = SignalExport.from_environment("metrics")
    # Checked before any exporter or thread starts.
    queue = QueueSettings.from_environment()
    interval_ms = metric_export_interval_ms()
    protect_logging([*header_secrets(), *endpoint_secrets(os.environ)])
    resource = build_resource(run_id)
    accounts = ExportAccounts()

    prometheus: tuple[WSGIServer, CollectorRegistry] | None = None
    readers = _metric_readers(metric_export, interval_ms, accounts)
    if prometheus_port is not None:
        server, registry, reader = _serve_prometheus(prometheus_port, prometheus_address)
        prometheus = (server, registry)
        readers.append(reader)
    meter_provider = MeterProvider(
        metric_readers=readers, resource=resource, shutdown_on_exit=False
    )

    tracer_provider = TracerProvider(
        sampler=recording_sampler(resource),
        resource=resource,
        span_limits=_span_limits(),
        shutdown_on_exit=False,
    )
    sink_errors = SinkErrors(accounts)
    state = MetricState()
    instruments = EsperInstruments(
        meter_provider.get_meter(METER_NAME, app.__version__), run_id, state, sink_errors
    )
    esper_metrics = EsperMetrics(instruments, state)
    tracer_provider.add_span_processor(SpanMetricsProcessor(esper_metrics))
    for processor in _span_processors(traces, queue, accounts, meter_provider):
        tracer_provider.add_span_processor(processor)

    session = OpenTelemetrySession(
        run_id,
        tracer_provider,
        meter_provider,
        OpenTelemetrySink(esper_metrics),
        sink_errors,
        prometheus,
        accounts,
    )
    if install_globally:
        session.install_globally()
    return session


def _metric_readers(
    export: SignalExport, interval_ms: float, accounts: ExportAccounts
) -> list[MetricReader]:
    """A periodic reader per configured metric exporter, each export booked."""
    exporters: list[tuple[str, MetricExporter]] = []
    if export.otlp:
        exporters.append((METRICS_SINK, otlp_metric_exporter(export)))
    if export.console:
        exporters.append((CONSOLE_METRICS_SINK, ConsoleMetricExporter()))
    readers: list[MetricReader] = []
    for sink, exporter in exporters:
        counting = CountingMetricExporter(exporter, accounts.ledger(sink, "metrics"))
        accounts.when_closed(counting.guard.abandon)
        readers.append(
            PeriodicExportingMetricReader(
                counting,
                export_interval_millis=interval_ms,
                export_timeout_millis=export.timeout_s * 1000,
            )
        )
    return readers


def _span_processors(
    traces: SignalExport,
    settings: QueueSettings,
    accounts: ExportAccounts,
    meter_provider: MeterProvider,
) -> list[AccountingSpanProcessor]:
    """A batching processor per configured span exporter, every span booked."""
    exporters: list[tuple[str, SpanExporter]] = []
    if traces.otlp:
        exporters.append((TRACES_SINK, otlp_span_exporter(traces)))
    if traces.console:
        exporters.append((CONSOLE_TRACES_SINK, ConsoleSpanExporter()))
    processors: list[AccountingSpanProcessor] = []
    for sink, exporter in exporters:
        # Span-limit drops are a property of the span: counted by the first processor.
        limits = None if processors else accounts.span_limits
        processor = AccountingSpanProcessor(
            exporter, accounts.ledger(sink, "traces"), limits, settings, meter_provider
        )
        accounts.when_closed(processor.exporter.guard.abandon)
        processors.append(processor)
    return processors
