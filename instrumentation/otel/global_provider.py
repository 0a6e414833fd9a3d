"""The process-wide TracerProvider: one per process, forwarding to the session of the run
that is going on now.

Who needs it: anyone who runs several trainings in one Python process, such as a sweep
driver or a notebook that calls `app.cli.main(["train", ...])` again and again (and every
test that trains in-process). The OpenTelemetry API lets a process set the global
TracerProvider once, and the `trace.get_tracer()` proxies that `app/` creates at import
time bind to the first real provider for good. Were each session's own provider set as
the global, the second run's spans would go to the first run's provider, shut down by
then, and be lost. So the global is a `RoutingTracerProvider`, set once per process;
each session installed re-targets it, and its shutdown detaches it (spans started after
that are not recorded).

The global MeterProvider is set once, to the first session's provider: `app/` uses no
meters, and Esper's instruments live on each session's own provider.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span
from opentelemetry.util.types import Attributes

_log = logging.getLogger(__name__)


class RoutingTracer(trace.Tracer):
    """A tracer that starts spans on the current target provider's tracer of its name.

    Arguments are forwarded unchanged, as the API's own `ProxyTracer` does.
    """

    def __init__(self, router: RoutingTracerProvider, args: tuple[Any, ...]) -> None:
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

    def start_span(self, *args: Any, **kwargs: Any) -> Span:
        return self._current().start_span(*args, **kwargs)

    # contextlib's manager for the API's private async-capable one: same behaviour here.
    @contextmanager
    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Iterator[Span]:  # type: ignore[override]
        with self._current().start_as_current_span(*args, **kwargs) as span:
            yield span


class RoutingTracerProvider(trace.TracerProvider):
    """Forwards to `target`, the installed session's provider (None: spans not recorded)."""

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
        return RoutingTracer(self, args)


_ROUTER = RoutingTracerProvider()
_lock = threading.Lock()
_set = {"tracer_provider": False, "meter_provider": False}


def install_tracer_provider(provider: TracerProvider | None) -> None:
    """Route the global tracer provider to `provider` (the router is set on first use)."""
    with _lock:
        if not _set["tracer_provider"]:
            trace.set_tracer_provider(_ROUTER)
            _set["tracer_provider"] = True
            if trace.get_tracer_provider() is not _ROUTER:
                _log.warning(
                    "another global TracerProvider was set before Esper's; "
                    "training spans go to that one, not to the configured exporters"
                )
        _ROUTER.target = provider


def release_tracer_provider(provider: TracerProvider | None) -> None:
    """Stop routing to `provider` if the global tracer provider routes to it now."""
    with _lock:
        if _ROUTER.target is provider:
            _ROUTER.target = None


def install_meter_provider(provider: MeterProvider) -> None:
    """Set `provider` as the global MeterProvider unless one was set before."""
    with _lock:
        if not _set["meter_provider"]:
            metrics.set_meter_provider(provider)
            _set["meter_provider"] = True
