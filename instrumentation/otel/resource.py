"""The resource every span, log record and metric of a run carries (docs/opentelemetry.md)."""

from __future__ import annotations

from opentelemetry.sdk.resources import (
    SERVICE_INSTANCE_ID,
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)

import app
from app.contracts import telemetry_names as names

DEFAULT_SERVICE_NAME = "esper-training"


def build_resource(run_id: str, rank: int | None = None) -> Resource:
    """OTEL_SERVICE_NAME or a service.name in OTEL_RESOURCE_ATTRIBUTES replaces the
    default service name; the other OTEL_RESOURCE_ATTRIBUTES are kept; the run id is ours.

    A process of a run of several (`rank` given) carries its rank, and an instance id of
    its own: `<run id>-<rank>`."""
    from_environment = OTELResourceDetector().detect().attributes
    service_name = str(from_environment.get(SERVICE_NAME) or DEFAULT_SERVICE_NAME)
    ours: dict[str, str | int] = {
        SERVICE_NAME: service_name,
        SERVICE_VERSION: app.__version__,
        SERVICE_INSTANCE_ID: run_id if rank is None else f"{run_id}-{rank}",
        names.RUN_ID: run_id,
    }
    if rank is not None:
        ours[names.RANK] = rank
    return Resource.create(ours)
