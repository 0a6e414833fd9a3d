"""`configure_opentelemetry`: one run's providers, exporters, processors and readers,
assembled from the OTEL_* environment.

What each part reads and does:

- environment.py: the OTEL_* variables that say where each signal goes (exporters,
  protocol, timeout, SDK disabled) and the span limits; headers.py checks the header
  variables before anything starts, and redaction.py keeps their values and endpoint
  user info out of everything the process logs; batching.py checks
  `OTEL_METRIC_EXPORT_INTERVAL` (ms, default 60000) and the batch processors' queue,
  batch, delay and timeout variables (`OTEL_BSP_*` for spans, `OTEL_BLRP_*` for log
  records). `OTEL_SPAN_*_LIMIT`, `OTEL_LOGRECORD_*_LIMIT`, `OTEL_SERVICE_NAME` and
  `OTEL_RESOURCE_ATTRIBUTES` are read by the SDK.
- `OTEL_TRACES_SAMPLER` / `_ARG` decide which traces are exported, not what is
  measured: dropped spans are still recorded (sampling.py).
- resource.py: the resource; exporters.py: the OTLP exporters and the counting wrappers;
  event_logs.py: the log record of each domain event;
  prometheus.py: the `--prometheus-port` endpoint; instruments.py and metrics.py:
  Esper's metrics; session.py: the session and its bounded shutdown;
  global_provider.py: the process-wide tracer provider that follows the current session.

Never in the way of training: spans go through a BatchSpanProcessor (bounded
queue of OTEL_BSP_MAX_QUEUE_SIZE spans, export on its own thread), log records through a
BatchLogRecordProcessor (OTEL_BLRP_MAX_QUEUE_SIZE, own thread), metrics through a
PeriodicExportingMetricReader (own thread). Every span, log record and metric export is
accounted for (accounting.py): sent, or lost with its reason (export failed and the
collector's status, queue full, shutdown bound reached); the losses per exporter, and
what span and log record limits dropped, are `esper_telemetry_sink_errors_total{sink=
"otlp_traces" | "otlp_logs" | "otlp_metrics" | "span_limits" | "log_limits" | ...}` and
the summary's `export:` line (summary.py).
"""

from __future__ import annotations

import os
import warnings

from opentelemetry.sdk._logs import (
    LoggerProvider,
    LogRecordDroppedAttributesWarning,
    LogRecordLimits,
)
from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

import app
from instrumentation.otel.accounting import (
    CONSOLE_LOGS_SINK,
    CONSOLE_METRICS_SINK,
    CONSOLE_TRACES_SINK,
    LOGS_SINK,
    METRICS_SINK,
    TRACES_SINK,
    ExportAccounts,
)
from instrumentation.otel.adapter import OpenTelemetrySink
from instrumentation.otel.batching import QueueSettings, metric_export_interval_ms
from instrumentation.otel.environment import (
    SignalExport,
    log_record_limits,
    sdk_disabled,
    span_limits,
)
from instrumentation.otel.event_logs import LOGGER_NAME, EventLogs
from instrumentation.otel.exporters import (
    CountingMetricExporter,
    otlp_log_exporter,
    otlp_metric_exporter,
    otlp_span_exporter,
)
from instrumentation.otel.headers import check_header_variables, header_secrets
from instrumentation.otel.instruments import METER_NAME, EsperInstruments
from instrumentation.otel.log_processor import AccountingLogProcessor
from instrumentation.otel.metric_preferences import MetricPreferences
from instrumentation.otel.metric_state import MetricState
from instrumentation.otel.metrics import EsperMetrics, SpanMetricsProcessor
from instrumentation.otel.processor import AccountingSpanProcessor
from instrumentation.otel.prometheus import PrometheusEndpoint, serve_prometheus
from instrumentation.otel.redaction import endpoint_secrets, protect_logging
from instrumentation.otel.resource import build_resource
from instrumentation.otel.sampling import recording_sampler
from instrumentation.otel.session import OpenTelemetrySession
from instrumentation.otel.sink_errors import SinkErrors


def configure_opentelemetry(
    run_id: str,
    prometheus_port: int | None = None,
    *,
    prometheus_address: str = "0.0.0.0",
    install_globally: bool = True,
    rank: int | None = None,
) -> OpenTelemetrySession:
    """Build this run's providers from the OTEL_* environment (see the module docstring).

    Raises TelemetryConfigError, naming the variable or the port, on bad configuration,
    before anything is started. `install_globally=False` leaves the global providers
    alone (tests that need no `app/` spans); `prometheus_port=0` picks a free port.
    `rank` is the process's rank in a run of several (app/distributed/world.py).
    """
    if sdk_disabled():
        session = OpenTelemetrySession(run_id)
        if install_globally:
            session.install_globally()
        return session
    check_header_variables()
    traces = SignalExport.from_environment("traces")
    metric_export = SignalExport.from_environment("metrics")
    logs = SignalExport.from_environment("logs")
    # Checked before any exporter or thread starts.
    queue = QueueSettings.from_environment()
    log_queue = QueueSettings.from_environment(processor="BLRP")
    interval_ms = metric_export_interval_ms()
    record_limits = log_record_limits()
    protect_logging([*header_secrets(), *endpoint_secrets(os.environ)])
    resource = build_resource(run_id, rank)
    accounts = ExportAccounts()

    prometheus: PrometheusEndpoint | None = None
    readers = _metric_readers(metric_export, interval_ms, accounts)
    if prometheus_port is not None:
        prometheus = serve_prometheus(prometheus_port, prometheus_address)
        readers.append(prometheus.reader)
    meter_provider = MeterProvider(
        metric_readers=readers, resource=resource, shutdown_on_exit=False
    )

    limits = span_limits()
    tracer_provider = TracerProvider(
        sampler=recording_sampler(resource),
        resource=resource,
        span_limits=limits,
        shutdown_on_exit=False,
    )
    sink_errors = SinkErrors(accounts)
    state = MetricState()
    instruments = EsperInstruments(
        meter_provider.get_meter(METER_NAME, app.__version__),
        run_id,
        state,
        sink_errors,
        rank=rank or 0,
    )
    esper_metrics = EsperMetrics(instruments, state)
    tracer_provider.add_span_processor(SpanMetricsProcessor(esper_metrics))
    for processor in _span_processors(traces, queue, accounts, meter_provider):
        tracer_provider.add_span_processor(processor)
    logger_provider = _logger_provider(
        logs, log_queue, record_limits, accounts, meter_provider, resource
    )
    event_logs = (
        None
        if logger_provider is None
        else EventLogs(logger_provider.get_logger(LOGGER_NAME, app.__version__))
    )

    session = OpenTelemetrySession(
        run_id,
        tracer_provider=tracer_provider,
        span_limits=limits,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        sink=OpenTelemetrySink(esper_metrics, limits, event_logs),
        sink_errors=sink_errors,
        prometheus=prometheus,
        accounts=accounts,
    )
    if install_globally:
        session.install_globally()
    return session


def _metric_readers(
    export: SignalExport, interval_ms: float, accounts: ExportAccounts
) -> list[MetricReader]:
    """A periodic reader per configured metric exporter, each export booked."""
    exporters: list[tuple[str, MetricExporter, MetricPreferences]] = []
    if export.otlp:
        otlp = MetricPreferences.for_otlp(export.protocol)
        exporters.append((METRICS_SINK, otlp_metric_exporter(export, otlp), otlp))
    if export.console:
        exporters.append((CONSOLE_METRICS_SINK, ConsoleMetricExporter(), MetricPreferences()))
    readers: list[MetricReader] = []
    for sink, exporter, preferences in exporters:
        counting = CountingMetricExporter(exporter, accounts.ledger(sink, "metrics"), preferences)
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


def _logger_provider(
    logs: SignalExport,
    settings: QueueSettings,
    limits: LogRecordLimits,
    accounts: ExportAccounts,
    meter_provider: MeterProvider,
    resource: Resource,
) -> LoggerProvider | None:
    """A logger provider with a batching processor per configured log exporter, every
    record booked; None when no log exporter is configured."""
    exporters: list[tuple[str, LogRecordExporter]] = []
    if logs.otlp:
        exporters.append((LOGS_SINK, otlp_log_exporter(logs)))
    if logs.console:
        exporters.append((CONSOLE_LOGS_SINK, ConsoleLogRecordExporter()))
    if not exporters:
        return None
    # The SDK warns about every record whose attributes LogRecordLimits cut; the
    # processor counts them for the summary and the sink-error metric instead.
    warnings.filterwarnings("ignore", category=LogRecordDroppedAttributesWarning)
    provider = LoggerProvider(
        resource=resource,
        shutdown_on_exit=False,
        meter_provider=meter_provider,
        log_record_limits=limits,
    )
    for index, (sink, exporter) in enumerate(exporters):
        # Attribute drops are a property of the record: counted by the first processor.
        processor = AccountingLogProcessor(
            exporter,
            accounts.ledger(sink, "logs"),
            accounts.log_limits if index == 0 else None,
            settings,
            meter_provider,
        )
        accounts.when_closed(processor.exporter.guard.abandon)
        provider.add_log_record_processor(processor)
    return provider
