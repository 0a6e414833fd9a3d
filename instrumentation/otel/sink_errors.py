"""The values of `esper_telemetry_sink_errors_total`, read when a reader collects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from instrumentation.otel.accounting import ExportAccounts


class HubLike(Protocol):
    """What the sink-error metric reads from the telemetry hub."""

    @property
    def sinks(self) -> Sequence[Any]: ...

    @property
    def sink_errors(self) -> Mapping[str, int]: ...


class SinkErrors:
    """The hub's failures by sink (every sink of the hub, zero until it fails) plus the
    items each exporter lost and what span limits dropped (accounting.py)."""

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
