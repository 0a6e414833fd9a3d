"""The span-event attributes of one domain event (docs/opentelemetry.md, a contract).

`esper.event.type`, `esper.event.id`, `esper.event.severity`, then `esper.seed_id`,
`esper.slot_id`, `esper.epoch` and `esper.message` when set, then every data key as
`esper.data.<key>`: nested objects flattened with dots, lists of primitives kept as
homogeneous arrays, None left out.

Built on the training thread for every event, so the common values (str, int, float,
bool by exact type, plain dicts) are dispatched on `type()` before any isinstance check
against an abstract class, which costs several times more; the rarer values (numpy
scalars, tuples, other mappings, arbitrary objects) go through `attribute_value`.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from opentelemetry.util.types import AttributeValue

from app.contracts import telemetry_names as names
from app.contracts.events import EventType, TelemetryEvent

_PLAIN = frozenset({str, int, float, bool})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NANOSECONDS_PER_MICROSECOND = 1000
_EVENT_NAMES = {event_type: names.span_event_name(event_type) for event_type in EventType}


def event_name(event: TelemetryEvent) -> str:
    """The span event's name: `esper.<event type in lower case>`."""
    return _EVENT_NAMES[event.event_type]


def timestamp_ns(moment: datetime) -> int:
    """Nanoseconds since the Unix epoch, exact to the microsecond a datetime holds."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * _NANOSECONDS_PER_MICROSECOND


def event_attributes(event: TelemetryEvent) -> dict[str, AttributeValue]:
    """The span-event attributes for one event."""
    attributes: dict[str, AttributeValue] = {
        names.EVENT_TYPE: event.event_type.value,
        names.EVENT_ID: event.event_id,
        names.EVENT_SEVERITY: event.severity.value,
    }
    if event.seed_id is not None:
        attributes[names.SEED_ID] = event.seed_id
    if event.slot_id is not None:
        attributes[names.SLOT_ID] = event.slot_id
    if event.epoch is not None:
        attributes[names.EPOCH] = event.epoch
    if event.message:
        attributes[names.MESSAGE] = event.message
    _flatten_into(attributes, event.data, names.DATA_PREFIX)
    return attributes


def _flatten_into(
    attributes: dict[str, AttributeValue], data: Mapping[str, object], prefix: str
) -> None:
    for key, value in data.items():
        if type(value) in _PLAIN:
            attributes[f"{prefix}{key}"] = value  # type: ignore[assignment]
        elif isinstance(value, dict | Mapping):
            _flatten_into(attributes, value, f"{prefix}{key}.")
        else:
            converted = attribute_value(value)
            if converted is not None:
                attributes[f"{prefix}{key}"] = converted


def attribute_value(value: object) -> AttributeValue | None:
    """value as an OTel attribute value, or None to leave it out.

    Primitives stay as they are (numpy scalars become int or float); a list or tuple
    becomes a homogeneous array: all bools, all ints, numbers mixed with floats as
    floats, anything else as strings. Objects that are none of these are written as
    `str(value)`, as the JSONL log does: losing the type beats losing the value.
    """
    if value is None:
        return None
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, list | tuple):
        return _array([item for item in value if item is not None])
    return str(value)


def _array(items: Sequence[object]) -> AttributeValue:
    kinds = set(map(type, items))
    # The arrays events carry: exact floats (ints among them become floats), exact ints
    # or strings; decided from the set of types, not one isinstance per item.
    if kinds == {float} or kinds == {float, int}:
        return [float(item) for item in items]  # type: ignore[arg-type]
    if kinds == {int} or kinds == {str}:
        return list(items)  # type: ignore[arg-type]
    if all(isinstance(item, bool) for item in items):
        return [bool(item) for item in items]
    if not any(isinstance(item, bool) for item in items):
        if all(isinstance(item, numbers.Integral) for item in items):
            return [int(item) for item in items]  # type: ignore[call-overload]
        if all(isinstance(item, numbers.Real) for item in items):
            return [float(item) for item in items]  # type: ignore[arg-type]
    return [item if isinstance(item, str) else str(item) for item in items]
