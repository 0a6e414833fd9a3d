"""Where telemetry goes: the event hub, its sinks, the OpenTelemetry SDK and replay.

`app.telemetry` is the front the training code calls; the hub installed there fans each
event out to the sinks (console, JSONL log, and the OpenTelemetry sink of `otel/`).
`replay.py` sends a JSONL log to OpenTelemetry after the fact. This package is the only
place that may import the OpenTelemetry SDK, so the application keeps depending on the
API alone and runs unchanged with the SDK absent or disabled.
"""
