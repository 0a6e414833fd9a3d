"""The short `esper.run` span that every batch trace links to, carrying the run's id and
its configuration as attributes."""

from __future__ import annotations

from dataclasses import asdict, replace

from opentelemetry import trace

from app.contracts import telemetry_names as names
from app.distributed.world import World
from app.training.config import RunConfig
from app.training.datasets import Dataset
from app.training.vectorized import VectorizedTrainer

tracer = trace.get_tracer("esper.cli")


def start_trainer(
    config: RunConfig, dataset: Dataset, run_id: str, world: World
) -> VectorizedTrainer:
    """Rank 0's trainer, built inside the `esper.run` span, which closes once it is
    built."""
    attributes = {names.RUN_ID: run_id, **span_attributes(config)}
    with tracer.start_as_current_span(names.RUN_SPAN, attributes=attributes) as run_span:
        return VectorizedTrainer(config, dataset, run_id, run_span, world=world)


def span_attributes(config: RunConfig) -> dict[str, str | int | float | bool]:
    """`esper.config.<field>` and `esper.config.<section>.<field>` for every value an
    attribute can hold (the data directory, a local path, is left out)."""
    flat: dict[str, str | int | float | bool] = {}
    for key, value in asdict(replace(config, data_dir=None)).items():
        if isinstance(value, dict):
            for inner, item in value.items():
                if isinstance(item, str | int | float | bool):
                    flat[f"{names.CONFIG_PREFIX}{key}.{inner}"] = item
        elif isinstance(value, str | int | float | bool):
            flat[f"{names.CONFIG_PREFIX}{key}"] = value
    return flat
