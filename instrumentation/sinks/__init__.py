"""Destinations for domain events: the console and the JSONL log (the OpenTelemetry sink
lives in instrumentation/otel/adapter.py)."""

from instrumentation.sinks.base import TelemetrySink
from instrumentation.sinks.console import ConsoleSink
from instrumentation.sinks.jsonl import JsonlSink

__all__ = ["ConsoleSink", "JsonlSink", "TelemetrySink"]
