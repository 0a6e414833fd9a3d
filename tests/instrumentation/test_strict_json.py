"""The fast strict-JSON encoder of the event log writes exactly what the simple one does."""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from decimal import Decimal
from enum import IntEnum, StrEnum
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from app.contracts.events import TelemetryEvent
from instrumentation.sinks.strict_json import strict_json_text, to_strict_json


def _reference(value: object) -> str:
    return json.dumps(to_strict_json(value), allow_nan=False)


class _Color(StrEnum):
    RED = "red"


class _Level(IntEnum):
    HIGH = 3


class _Loud(int):
    def __str__(self) -> str:
        return "loud"


class _Float(float):
    def __str__(self) -> str:
        return "float"


class _Opaque:
    def __str__(self) -> str:
        return "opaque ü"


HOSTILE: list[object] = [
    float("nan"),
    float("inf"),
    float("-inf"),
    -0.0,
    1e300,
    5e-324,
    2**70,
    -(2**70),
    True,
    None,
    "",
    'naïve ☃ 𝄞 \u2028 \x00 " \\ \n',
    ("a", 1, 2.5),
    (),
    [],
    {},
    {"nested": {"deeper": {"nan": float("nan"), "list": [1.5, float("-inf"), ("t",)]}}},
    [{"x": float("inf")}, {"y": [{"z": np.float32(np.nan)}]}],
    np.float64(0.1),
    np.float64(np.nan),
    np.float32(0.1),
    np.float32(np.inf),
    np.float16(-np.inf),
    np.int64(-7),
    np.uint8(255),
    np.bool_(True),
    np.array([1.0, 2.0]),
    _Color.RED,
    _Level.HIGH,
    _Loud(5),
    _Float(2.5),
    _Float("nan"),
    Decimal("1.10"),
    Fraction(1, 3),
    {1, 2},
    deque([1, 2]),
    _Opaque(),
    OrderedDict([("b", 1), ("a", float("nan"))]),
    {2: "int key", 2.5: "float key", True: "bool key", None: "none key"},
    {"ok": {False: 1}},
    [[{"deep": {(1, 2): "tuple key"}}]],
    {_Level.HIGH: "int enum key", _Color.RED: "str enum key"},
    {_Loud(1): "int subclass key", _Float(1.5): "float subclass key"},
    {np.int64(3): "numpy key", np.float64(0.5): "numpy float key"},
    {"stats": {f"layer{n}": {"mean": n / 7, "max": np.float32(n)} for n in range(12)}},
]


@pytest.mark.parametrize(
    "value", HOSTILE, ids=[f"{n}-{type(v).__name__}" for n, v in enumerate(HOSTILE)]
)
def test_hostile_values_encode_as_the_reference_does(value: object) -> None:
    assert strict_json_text(value) == _reference(value)
    assert strict_json_text({"data": value}) == _reference({"data": value})
    assert strict_json_text([value, value]) == _reference([value, value])


def test_every_legacy_event_encodes_as_the_reference_does(legacy_log: Path) -> None:
    lines = legacy_log.read_text(encoding="ascii").splitlines()
    for line in lines:
        record = TelemetryEvent.from_record(json.loads(line)).to_record()
        assert strict_json_text(record) == _reference(record) == line


def test_each_hostile_value_inside_a_legacy_event(legacy_log: Path) -> None:
    line = legacy_log.read_text(encoding="ascii").splitlines()[0]
    for value in HOSTILE:
        record = json.loads(line)
        record["data"]["hostile"] = value
        record["trace_id"], record["span_id"] = "ab" * 16, "cd" * 8
        assert strict_json_text(record) == _reference(record)


def test_the_output_is_strict_ascii_json() -> None:
    text = strict_json_text({"nan": float("nan"), "text": "ü", "n": np.float32(np.inf)})
    assert text.isascii()
    assert json.loads(text, parse_constant=lambda name: pytest.fail(name)) == {
        "nan": "NaN",
        "text": "ü",
        "n": "Infinity",
    }
