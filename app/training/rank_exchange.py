"""What the ranks of one training exchange in each batch (app/distributed/world.py).

Rank 0 opens the batch's `esper.batch` span and hands its W3C trace context to the other
ranks before the episodes start, so that their `esper.episode` spans are children of it
in the batch's one trace. After the episodes every rank sends rank 0 its rollouts; rank 0
updates and sends back the batch's result, the new weights and the telemetry level. In a
run of one process each exchange hands its argument back.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from app.contracts import telemetry_names as names
from app.contracts.events import TelemetryLevel
from app.distributed.world import World
from app.training.batch_parts import BatchResult, Episodes

tracer = trace.get_tracer("esper.training")
propagator = TraceContextTextMapPropagator()


class RankExchange:
    """The batch's exchanges between this process and the other ranks."""

    def __init__(self, world: World) -> None:
        self.world = world

    @contextmanager
    def batch_span(
        self, attributes: Mapping[str, str | int], links: Sequence[Link]
    ) -> Iterator[Span]:
        """The batch's `esper.batch` span, current inside: opened on rank 0, whose context
        the other ranks receive and hold as a span they do not record."""
        carrier: dict[str, str] = {}
        if not self.world.is_leader:
            carrier = self.world.broadcast(carrier, "receiving the batch's trace context")
            remote = trace.get_current_span(propagator.extract(carrier))
            with trace.use_span(remote, end_on_exit=False):
                yield remote
            return
        with tracer.start_as_current_span(
            names.BATCH_SPAN, context=Context(), links=links, attributes=attributes
        ) as span:
            propagator.inject(carrier)
            self.world.broadcast(carrier, "sending the batch's trace context")
            yield span

    def gather(self, episodes: Episodes) -> list[Episodes]:
        """Every rank's episodes in rank order (env order), on rank 0; the rollouts travel
        on the CPU."""
        if self.world.size > 1 and episodes.buffer is not None:
            episodes = replace(episodes, buffer=episodes.buffer.to(torch.device("cpu")))
        return self.world.gather(episodes, "gathering the episodes on rank 0")

    def share(
        self,
        result: BatchResult | None,
        weights: dict[str, Any] | None,
        level: TelemetryLevel,
    ) -> tuple[BatchResult, dict[str, Any] | None, TelemetryLevel]:
        """Rank 0's result, policy weights and telemetry level, on every rank. The weights
        travel on the CPU: a CUDA tensor would arrive on the sender's device index."""
        if self.world.size > 1:
            if weights is not None:
                weights = {name: tensor.cpu() for name, tensor in weights.items()}
            result, weights, level = self.world.broadcast(
                (result, weights, level), "sending the update to every rank"
            )
        assert result is not None, "rank 0 always has the batch's result"
        return result, weights, level
