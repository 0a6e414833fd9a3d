"""The fast span-event attribute builder gives exactly what the straightforward mapping of
docs/opentelemetry.md gives: same keys, same order, same values of the same types."""

from __future__ import annotations

import json
import numbers
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from enum import IntEnum, StrEnum
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
from opentelemetry.util.types import AttributeValue

from app.contracts import telemetry_names as names
from app.contracts.events import EventType, Severity, TelemetryEvent
from instrumentation.otel.span_event_attributes import event_attributes


def _reference(event: TelemetryEvent) -> dict[str, AttributeValue]:
    """The mapping written plainly: one isinstance chain per value."""
    attributes: dict[str, AttributeValue] = {
        names.EVENT_TYPE: event.event_type.value,
        names.EVENT_ID: event.event_id,
        names.EVENT_SEVERITY: event.severity.value,
    }
    optional: tuple[tuple[str, str | int | None], ...] = (
        (names.SEED_ID, event.seed_id),
        (names.SLOT_ID, event.slot_id),
        (names.EPOCH, event.epoch),
        (names.MESSAGE, event.message or None),
    )
    attributes.update((key, value) for key, value in optional if value is not None)
    attributes.update(_flatten(event.data, names.DATA_PREFIX))
    return attributes


def _flatten(data: Mapping[str, object], prefix: str) -> Iterator[tuple[str, AttributeValue]]:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{name}.")
            continue
        converted = _value(value)
        if converted is not None:
            yield name, converted


def _value(value: object) -> AttributeValue | None:
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
    if all(isinstance(item, bool) for item in items):
        return [bool(item) for item in items]
    if not any(isinstance(item, bool) for item in items):
        if all(isinstance(item, numbers.Integral) for item in items):
            return [int(item) for item in items]  # type: ignore[call-overload]
        if all(isinstance(item, numbers.Real) for item in items):
            return [float(item) for item in items]  # type: ignore[arg-type]
    return [item if isinstance(item, str) else str(item) for item in items]


def _typed(attributes: Mapping[str, object]) -> list[tuple[str, str, str]]:
    """Keys in order with each value's type and repr (NaN compares equal to NaN here)."""
    return [(key, type(value).__name__, repr(value)) for key, value in attributes.items()]


class _Color(StrEnum):
    RED = "red"


class _Level(IntEnum):
    HIGH = 3


HOSTILE: dict[str, object] = {
    "nan": float("nan"),
    "inf": float("-inf"),
    "text": "naïve ☃",
    "empty": "",
    "none": None,
    "flag": False,
    "big": 2**70,
    "np_int": np.int64(-7),
    "np_uint": np.uint8(255),
    "np_float": np.float64(0.25),
    "np_float32": np.float32(np.nan),
    "np_bool": np.bool_(True),
    "enum_str": _Color.RED,
    "enum_int": _Level.HIGH,
    "decimal": Decimal("1.10"),
    "nested": {"a": {"b": {"c": 1.5, "d": None, "e": [1, 2]}}},
    "ordered": OrderedDict([("z", 1), ("y", 2)]),
    "proxy": MappingProxyType({"k": "v"}),
    "non_str_key": {1: "one", None: "none"},
    "floats": [0.5, float("nan"), 2.0],
    "ints_and_floats": [1, 2.5],
    "ints": [1, 2, 3],
    "strings": ("a", "b"),
    "bools": [True, False],
    "bools_and_ints": [True, 2],
    "numpy_items": [np.int64(1), np.int32(2)],
    "numpy_floats": [np.float32(0.5), 1],
    "mixed": [1, "a", 2.5, None],
    "with_none": [None, 1.5],
    "empty_list": [],
    "object": Path("/tmp"),
    "array": np.array([1.0, 2.0]),
    "layer_grad_stats": {f"policy.{n}.weight": {"norm": n / 3, "max": 1.0} for n in range(12)},
}


def test_every_legacy_event_maps_as_the_reference_does(legacy_log: Path) -> None:
    for line in legacy_log.read_text(encoding="ascii").splitlines():
        event = TelemetryEvent.from_record(json.loads(line))
        assert _typed(event_attributes(event)) == _typed(_reference(event))


@pytest.mark.parametrize("key", list(HOSTILE))
def test_hostile_values_map_as_the_reference_does(key: str) -> None:
    event = TelemetryEvent(
        EventType.PPO_UPDATE_COMPLETED,
        data={key: HOSTILE[key], "after": 1},
        seed_id="env0_seed_1",
        epoch=0,
        message="m",
        severity=Severity.ERROR,
    )
    assert _typed(event_attributes(event)) == _typed(_reference(event))


def test_all_hostile_values_in_one_event() -> None:
    event = TelemetryEvent(EventType.EPOCH_COMPLETED, data=dict(HOSTILE), slot_id="s", epoch=None)
    assert _typed(event_attributes(event)) == _typed(_reference(event))
