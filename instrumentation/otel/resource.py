"""The resource every span and metric of a run carries (docs/opentelemetry.md)."""

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


def build_resource(run_id: str) -> Resource:
    """OTEL_SERVICE_NAME or a service.name in OTEL_RESOURCE_ATTRIBUTES replaces the
    default service name; the other OTEL_RESOURCE_ATTRIBUTES are kept; the run id is ours."""
    from_environment = OTELResourceDetector().detect().attributes
    service_name = from_environment.get(SERVICE_NAME) or DEFAULT_SERVICE_NAME
    return Resource.create(
        {
            SERVICE_NAME: service_name,
            SERVICE_VERSION: app.__version__,
            SERVICE_INSTANCE_ID: run_id,
            names.RUN_ID: run_id,
        }
    )
