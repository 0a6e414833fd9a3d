"""Numbers read from a log or run.json, which may hold anything JSON can: a bool is not
a number here, nor is a non-finite float or the strings "NaN" and "Infinity"."""

from __future__ import annotations

import math
from typing import TypeGuard


def finite(value: object) -> float | None:
    """value as a float when it is a finite number; None otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def is_integer(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
