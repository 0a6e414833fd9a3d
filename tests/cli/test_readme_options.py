"""README's table "`esper train` options" against the parser: every option of `esper train`
is a row and every row an option, each with the default the parser has (and its help
shows)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from app.cli.parser import build_parser, shown_default

README = Path(__file__).resolve().parents[2] / "README.md"


def documented() -> dict[str, str]:
    """The table's default cell, by the option's flag."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## `esper train` options", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"^\| `(--[a-z-]+)[^`]*` \| ([^|]*) \|", line)
        if match:
            rows[match[1]] = match[2].strip().strip("`")
    return rows


def train_options() -> dict[str, argparse.Action]:
    parser = build_parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train: argparse.ArgumentParser = commands.choices["train"]
    return {
        a.option_strings[-1]: a for a in train._actions if a.option_strings and a.dest != "help"
    }


def _help_default(action: argparse.Action) -> str:
    """The first word of what the help says after `(default: `."""
    match = re.search(r"\(default: ([^,;)\s]+)", action.help or "")
    assert match, f"{action.option_strings[-1]}: the help does not say its default"
    return match[1]


def _same(cell: str, default: object) -> bool:
    if isinstance(default, Path):
        return Path(cell) == default
    try:
        return float(cell) == float(shown_default(default))
    except ValueError:
        return cell == shown_default(default)


def test_the_table_lists_every_option_and_only_options() -> None:
    rows, options = documented(), train_options()
    assert rows, "no options table found in README"
    assert sorted(set(options) - set(rows)) == [], "options missing from README's table"
    assert sorted(set(rows) - set(options)) == [], "README rows for options that do not exist"


def test_every_row_gives_the_parsers_default() -> None:
    rows = documented()
    for flag, action in train_options().items():
        cell = rows[flag]
        if action.nargs == 0:
            assert cell == "off", f"{flag}: a flag, off unless given; README says {cell!r}"
        elif action.default is None:
            assert _same(cell, _help_default(action)), f"{flag}: README says {cell!r}"
        else:
            assert _same(cell, action.default), f"{flag}: {action.default} in the parser, {cell!r}"
