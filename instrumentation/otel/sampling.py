"""Sampling decides what is exported, never what is measured.

Batch and update durations, the episode count and the batch accuracy are derived from
ended spans (`SpanMetricsProcessor`), and span processors only see spans that are
recorded. So the sampler that OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG configure is
wrapped in the SDK's `AlwaysRecordSampler`: a DROP decision becomes RECORD_ONLY, every
span is recorded and reaches the metric processor, and only sampled spans are exported
(the BatchSpanProcessor skips the others). The JSONL log names only sampled spans
(`adapter.current_span_ids`), since only those can be found in a trace backend.
"""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import AlwaysRecordSampler, Sampler


def configured_sampler(resource: Resource) -> Sampler:
    """The sampler the OTEL_TRACES_SAMPLER variables select, built by the SDK itself
    (a provider given no sampler reads them; its public `sampler` is what it built)."""
    return TracerProvider(resource=resource, shutdown_on_exit=False).sampler


def recording_sampler(resource: Resource) -> Sampler:
    """The configured sampler, recording (not exporting) the spans it drops."""
    return AlwaysRecordSampler(configured_sampler(resource))
