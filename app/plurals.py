"""Counts as the console lines write them: "1 batch", "2 batches", "0 events"."""

from __future__ import annotations


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """`number` and `noun`, the noun in its plural (`plural`, else `noun` + "s") unless
    `number` is 1."""
    if number == 1:
        return f"{number} {noun}"
    return f"{number} {plural or noun + 's'}"
