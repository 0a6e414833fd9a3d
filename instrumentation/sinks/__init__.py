"""Destinations for domain events: the console, the JSONL log (an OTel adapter to come)."""

from instrumentation.sinks.base import TelemetrySink
from instrumentation.sinks.console import ConsoleSink
from instrumentation.sinks.jsonl import JsonlSink

__all__ = ["ConsoleSink", "JsonlSink", "TelemetrySink"]
