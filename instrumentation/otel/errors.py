"""The error every OpenTelemetry configuration check raises (its own module, so that the
modules that check settings need not import the SDK setup that uses them)."""


class TelemetryConfigError(ValueError):
    """An OTEL_* variable or option has a value this application cannot use."""
