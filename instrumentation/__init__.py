"""Where telemetry goes: the event hub, its sinks and (later) the OpenTelemetry SDK setup.

`app.telemetry` is the front the training code calls; the hub installed there fans each
event out to the sinks (console, JSONL log, and an OpenTelemetry adapter to come). This
package is the only place that may import the OpenTelemetry SDK, so the application keeps
depending on the API alone and runs unchanged with the SDK absent or disabled.
"""
