"""`--set SECTION.FIELD=VALUE`: any field of RunConfig's nested sections, from the command
line, and the table of every such key that `--show-config` prints.

Nothing here names a section or a field: sections are RunConfig's fields that hold a
dataclass, and each value is parsed from its field's type annotation, so a section or a
field added to RunConfig is settable (and shown) without touching this module.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any

from app.settings import ConfigError, render
from app.training.config import RunConfig

FORMAT = "SECTION.FIELD=VALUE"
_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


class OverrideError(ValueError):
    """An override that cannot be applied; the message is one line naming it."""


@dataclasses.dataclass(frozen=True)
class Override:
    """One parsed value for `section.field`. `source` is what the user typed (`--set
    k=v`, or a dedicated flag such as `--plateau-threshold 3`) so that an error found
    only when the section is rebuilt can name it."""

    section: str
    field: str
    value: object
    source: str


def sections(config: RunConfig) -> dict[str, Any]:
    """RunConfig's nested dataclasses by field name, in declaration order."""
    return {
        item.name: getattr(config, item.name)
        for item in dataclasses.fields(config)
        if dataclasses.is_dataclass(getattr(config, item.name))
    }


def _settable(section: Any) -> dict[str, Any]:
    """A section's init fields with their resolved type annotations, in declaration
    order (fields with init=False cannot be passed to `dataclasses.replace`)."""
    hints = typing.get_type_hints(type(section))
    return {item.name: hints[item.name] for item in dataclasses.fields(section) if item.init}


def parse_override(config: RunConfig, text: str) -> Override:
    """`SECTION.FIELD=VALUE` checked against `config`'s sections and parsed by type."""
    source = f"--set {text}"

    def fail(problem: str) -> OverrideError:
        return OverrideError(f"{source}: {problem}")

    key, equals, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not equals or not key:
        raise fail(f"expected {FORMAT}")
    section_name, dot, field_name = key.partition(".")
    known = sections(config)
    if section_name in {item.name for item in dataclasses.fields(config)} - known.keys():
        raise fail(f"{section_name} is not a section; use --{section_name.replace('_', '-')}")
    if not dot:
        raise fail(f"expected {FORMAT}")
    if section_name not in known:
        raise fail(
            f"unknown section {section_name!r}{_hint(section_name, known, 'sections', True)}"
        )
    hints = _settable(known[section_name])
    if field_name not in hints:
        raise fail(
            f"unknown field {field_name!r} in {section_name}{_hint(field_name, hints, 'fields')}"
        )
    try:
        value = _parser(hints[field_name])(raw)
    except _UnsupportedTypeError:
        kind = hints[field_name]
        kind = kind.__qualname__ if isinstance(kind, type) else kind  # not "<class 'X'>"
        raise fail(f"{field_name} is a {kind}, which cannot be set from the command line") from None
    except ValueError as error:
        raise fail(str(error)) from None
    return Override(section_name, field_name, value, source)


def apply_parsed(config: RunConfig, overrides: Iterable[Override]) -> RunConfig:
    """`config` with `overrides` applied, later ones for the same key winning.

    Each section is rebuilt once, with all of its overrides together, through
    `dataclasses.replace`, so that its own `__post_init__` checks the result: values
    that must agree (grad_vanishing below grad_exploding) can then be changed in either
    order, and a check that fails names every override of that section, and the field
    by its section (`ppo.lr`, as typed) rather than by its class (`PPOConfig.lr`).
    """
    grouped: dict[str, dict[str, Override]] = {}
    for override in overrides:
        fields = grouped.setdefault(override.section, {})
        fields.pop(override.field, None)  # keep the order in which the winners were given
        fields[override.field] = override
    changes: dict[str, Any] = {}
    for name, fields in grouped.items():
        section = getattr(config, name)
        try:
            changes[name] = dataclasses.replace(
                section, **{key: item.value for key, item in fields.items()}
            )
        except (TypeError, ValueError) as error:
            named = ", ".join(item.source for item in fields.values())
            problem = error.naming(name) if isinstance(error, ConfigError) else str(error)
            raise OverrideError(f"{named}: {problem}") from None
    return dataclasses.replace(config, **changes)


def config_table(config: RunConfig) -> list[tuple[str, str]]:
    """Every settable `section.field` with its value rendered for `--set`: sections in
    RunConfig's order, fields in declaration order."""
    return [
        (f"{name}.{field}", render(getattr(section, field)))
        for name, section in sections(config).items()
        for field in _settable(section)
    ]


def _hint(name: str, choices: Iterable[str], kind: str, listed: bool = False) -> str:
    """` (did you mean X?)` for a near miss; the choices too when `listed` or none is near."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    parts = [f"did you mean {close[0]}?"] if close else []
    if listed or not close:
        parts.append(f"{kind}: {', '.join(sorted(choices))}")
    return f" ({' '.join(parts)})"


class _UnsupportedTypeError(Exception):
    """A field type with no command-line syntax."""


def _parser(kind: Any) -> Callable[[str], object]:
    """A function from the typed text to a value of type `kind`; its ValueError says
    what was expected."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) != 1:
            raise _UnsupportedTypeError
        inner = _parser(rest[0])
        return lambda text: None if text.lower() == "none" else inner(text)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _parser(args[0])
        return lambda text: tuple(item(part.strip()) for part in text.split(",")) if text else ()
    if isinstance(kind, type) and issubclass(kind, Enum):
        return _enum_parser(kind)
    simple: dict[Any, Callable[[str], object]] = {
        bool: _bool,
        int: _int,
        float: _float,
        str: str,
    }
    if kind not in simple:
        raise _UnsupportedTypeError
    return simple[kind]


def _bool(text: str) -> bool:
    try:
        return _BOOLS[text.lower()]
    except KeyError:
        raise ValueError(f"expected true or false (yes/no, 1/0), got {text!r}") from None


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a float, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite float, got {text!r}")
    return value


def _enum_parser(kind: type[Enum]) -> Callable[[str], Enum]:
    by_name = {member.name.lower(): member for member in kind}

    def parse(text: str) -> Enum:
        try:
            return by_name[text.lower()]
        except KeyError:
            raise ValueError(f"expected one of {', '.join(by_name)}, got {text!r}") from None

    return parse
