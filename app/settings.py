"""What every settings section (a frozen dataclass such as PPOConfig or MemoryConfig)
shares: the checks its `__post_init__` runs, and how a value is written on the command line.

A failed check raises ConfigError with one phrasing, `OWNER.FIELD must be REQUIREMENT, got
VALUE`. Requirements use one vocabulary: "greater than X" and "less than X" exclude X,
"at least X" and "at most X" include it, "between X and Y" includes both.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from enum import Enum

# A bound is a number, or the name of another field of the same section.
Bound = float | str | None
_COMPARISONS: tuple[tuple[str, str, Callable[[float, float], bool]], ...] = (
    ("gt", "greater than", operator.gt),
    ("ge", "at least", operator.ge),
    ("lt", "less than", operator.lt),
    ("le", "at most", operator.le),
)


class ConfigError(ValueError):
    """A settings field holds a value it cannot take."""

    def __init__(self, owner: str, field: str, requirement: str, value: object) -> None:
        self.field = field
        self.requirement = requirement
        self.value = value
        super().__init__(self.naming(owner))

    def naming(self, owner: str) -> str:
        """The message with the field called `owner.field`: the command line names it by
        its section (`ppo.lr`) rather than by its class (`PPOConfig.lr`)."""
        return f"{owner}.{self.field} must be {self.requirement}, got {shown(self.value)}"


def require(section: object, name: str, holds: bool, requirement: str) -> None:
    """Raise ConfigError for the field `name` of `section` unless `holds`."""
    if not holds:
        raise ConfigError(type(section).__name__, name, requirement, getattr(section, name))


def check(
    section: object,
    *names: str,
    gt: Bound = None,
    ge: Bound = None,
    lt: Bound = None,
    le: Bound = None,
    finite: bool = False,
) -> None:
    """Each field in `names` of `section` within the bounds given (and finite when asked);
    a field that is None (switched off) passes. NaN fails every bound."""
    given = {"gt": gt, "ge": ge, "lt": lt, "le": le}
    limits = [
        (words, test, bound, _number(section, bound))
        for key, words, test in _COMPARISONS
        if (bound := given[key]) is not None
    ]
    if isinstance(ge, int | float) and isinstance(le, int | float):
        phrases = [f"between {shown(ge)} and {shown(le)}"]
    else:
        phrases = [f"{words} {_bound_text(bound, limit)}" for words, _, bound, limit in limits]
    requirement = " and ".join((["finite"] if finite else []) + phrases)
    for name in names:
        value = getattr(section, name)
        if value is None:
            continue
        holds = all(test(value, limit) for _, test, _, limit in limits)
        require(section, name, holds and (not finite or math.isfinite(value)), requirement)


def _number(section: object, bound: float | str) -> float:
    """A bound's number: the bound itself, or the value of the field it names."""
    number: float = getattr(section, bound) if isinstance(bound, str) else bound
    return number


def _bound_text(bound: float | str, number: float) -> str:
    return f"{bound} ({shown(number)})" if isinstance(bound, str) else shown(bound)


def render(value: object) -> str:
    """`value` as it would be typed after `--set KEY=`, so that printed output can be
    pasted back."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return value.name.lower()
    if isinstance(value, float):
        return repr(value)  # the shortest text that parses back to the same float
    if isinstance(value, tuple):
        return ",".join(render(item) for item in value)
    return str(value)


def shown(value: object) -> str:
    """`value` in a message: as typed, with a whole float as an integer (2, not 2.0)."""
    text = render(value)
    if isinstance(value, float):
        return text.removesuffix(".0")
    return text or "nothing"
