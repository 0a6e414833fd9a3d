"""Strict JSON text for the event log: no NaN or Infinity, ASCII only (docs/events.md).

`strict_json_text(value)` is exactly `json.dumps(to_strict_json(value), allow_nan=False)`,
byte for byte, at a fraction of its cost on the training thread: the common event (string
keys, finite floats, plain types) goes straight to the standard library's C encoder,
which calls `to_strict_json` only for the leaves it cannot encode itself (numpy integers,
arbitrary objects). The values the C encoder would write differently from
`to_strict_json` take the slow path: a non-finite float makes the C encoder raise
(`allow_nan=False`), and a dict key that is not a string (which `to_strict_json` turns
into `str(key)`, but the C encoder into `true`, `null` or a number) is found by a walk
over the containers before encoding.
"""

from __future__ import annotations

import json
import math
import numbers
from typing import Any


def to_strict_json(value: object) -> Any:
    """Return value as plain JSON data with no NaN or Infinity left in it.

    Non-finite floats become the strings "NaN", "Infinity" and "-Infinity" (the log is
    strict JSON, docs/events.md). Numbers of other types (numpy scalars register as
    `numbers.Real`) become int or float; tuples become lists; dict keys become strings.
    Any other object is written as `str(obj)`: losing its type is better than losing
    the event, and the log stays readable.
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _non_finite_name(value)
    if isinstance(value, dict):
        return {
            key if isinstance(key, str) else str(key): to_strict_json(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [to_strict_json(item) for item in value]
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return to_strict_json(float(value))
    return str(value)


def _non_finite_name(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


# The encoder `json.dumps(..., allow_nan=False)` builds on every call, built once; the C
# encoder asks `default` for every value that is not a str, int, float, bool, None,
# dict, list or tuple, and encodes what it returns.
_ENCODER = json.JSONEncoder(allow_nan=False, default=to_strict_json)
_CONTAINERS = (dict, list, tuple)


def strict_json_text(value: object) -> str:
    """`json.dumps(to_strict_json(value), allow_nan=False)`, byte for byte, faster."""
    if _string_keys(value):
        try:
            return _ENCODER.encode(value)
        except ValueError:
            pass  # a non-finite float: to_strict_json writes it as a string
    return json.dumps(to_strict_json(value), allow_nan=False)


def _string_keys(value: object) -> bool:
    """Whether every dict inside value, at any depth, has only string keys. Plain loops:
    this runs on every event, and generator expressions cost more than the check."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return False
            if isinstance(item, _CONTAINERS) and not _string_keys(item):
                return False
    elif isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, _CONTAINERS) and not _string_keys(item):
                return False
    return True
