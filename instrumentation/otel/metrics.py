"""Esper's metrics (docs/opentelemetry.md, a contract for names and labels), fed by domain
events and by ended spans.

Cost on the training thread is what matters (one synchronous `Gauge.set` costs
~20 µs, so an event that set a dozen gauges would cost ~0.4 ms). So the event path only
writes plain Python values into `MetricState` under a lock (metric_state.py), and every
gauge and counter is an *observable* instrument whose callback reads that state when a
reader collects (instruments.py): on the periodic exporter's thread or on the Prometheus
HTTP thread, never on the training thread. Only the three duration histograms are
synchronous, recorded once per epoch, batch or update.

Prometheus names follow from the OpenTelemetry-to-Prometheus rules (dots become
underscores, counters gain `_total`, unit "s" becomes `_seconds`), the same in the
Python Prometheus reader and in the collector's exporter.

Durations: epochs from EPOCH_COMPLETED's `duration_s` (host train and validate);
batches and PPO updates from the spans `esper.batch` and `esper.ppo.update`, measured
by `SpanMetricsProcessor` when they end. That keeps `app/` on the OpenTelemetry API: no
event carries these durations, and the spans already time exactly that work.

Exemplars: each duration is recorded in the context of the span it measures, so that
the SDK's exemplar (filter `trace_based`: sampled spans only) points at that span. The
epoch duration gets the context that was current where EPOCH_COMPLETED was emitted, on
the `esper.epoch` span (adapter.py captures it). The batch and update durations are
recorded in `on_end`, where the current context is no help: a span ends after it
stopped being current, so it is the parent's (the batch's, for an update) or none. They
get a context holding the ended span itself instead; a span that sampling dropped is
still recorded (sampling.py) and its unsampled context gets no exemplar, as no trace
backend holds it. Recording there rather than in `app/` keeps the durations off the
training code, at the cost of one context per batch and update (about a microsecond).
"""

from __future__ import annotations

import math

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import NonRecordingSpan

from app.contracts import telemetry_names as names
from app.contracts.events import EventType, TelemetryEvent
from instrumentation.otel.instruments import EsperInstruments
from instrumentation.otel.metric_state import MetricState, real_number


class EsperMetrics:
    """The metric side of the OTel adapter: events in, instruments updated."""

    def __init__(self, instruments: EsperInstruments, state: MetricState) -> None:
        self.instruments = instruments
        self.state = state

    def observe(self, event: TelemetryEvent, context: Context | None = None) -> None:
        """Apply one event. `context` is the one current where the event was emitted, when
        that was another thread: the epoch-duration exemplar links to its span."""
        self.state.observe(event)
        if event.event_type is EventType.EPOCH_COMPLETED:
            duration = real_number(event.data.get("duration_s"))
            if duration is not None and math.isfinite(duration) and duration >= 0:
                self.instruments.epoch_duration.record(
                    duration, self.instruments.run_attributes, context=context
                )


class SpanMetricsProcessor(SpanProcessor):
    """Turns ended training spans into metrics: batch and update durations, episodes.

    Runs in `span.end()` on the training thread: one histogram record per batch or
    update, a counter bump per episode. It sees every span, sampled or not: the
    session's sampler records the spans it does not sample (sampling.py).
    """

    def __init__(self, metrics: EsperMetrics) -> None:
        self._metrics = metrics

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if span.attributes is not None and span.attributes.get(names.REPLAY_PART, 1) != 1:
            return  # a replayed span's later part: the span is counted once, at its first
        name = span.name
        if name == names.EPISODE_SPAN:
            self._metrics.state.count_episode()
            return
        if name not in (names.BATCH_SPAN, names.UPDATE_SPAN) or span.start_time is None:
            return
        if span.end_time is None or span.context is None:
            return
        seconds = (span.end_time - span.start_time) / 1e9
        instruments = self._metrics.instruments
        histogram = (
            instruments.batch_duration if name == names.BATCH_SPAN else instruments.update_duration
        )
        # The ended span's own context, for the exemplar (module docstring).
        measured = trace.set_span_in_context(NonRecordingSpan(span.context))
        histogram.record(seconds, instruments.run_attributes, context=measured)
        if name == names.BATCH_SPAN and span.attributes is not None:
            accuracy = real_number(span.attributes.get(names.AVG_ACCURACY))
            if accuracy is not None:
                self._metrics.state.set_batch_accuracy(accuracy)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
