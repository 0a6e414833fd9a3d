"""A run's configuration from the command line: the defaults or a resumed checkpoint's
configuration, the dedicated flags given, then `--set`; and the table that
`--show-config` prints."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from typing import Any

from app.cli.errors import UsageError
from app.cli.resume import Resumed, refuse_conflicts
from app.contracts.events import TelemetryLevel
from app.settings import render
from app.training.config import RunConfig
from app.training.overrides import Override, apply_parsed, config_table, parse_override, sections
from app.training.run_basics import RunBasics


def run_config(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """The run's configuration: `base` (the defaults, or a resumed checkpoint's) with the
    dedicated flags given, then each --set in order, so that --set wins for a field that a
    flag also sets. The progress flags are overrides of their own, applied with the --set
    ones for the same section, so that `--plateau-threshold 3 --set progress.improvement=5`
    is checked as a whole."""
    flagged = {
        item.name: _typed(item.name, getattr(args, item.name))
        for item in fields(RunBasics)
        if item.name in args.given
    }
    config = replace(base or RunConfig(), **flagged)
    flags = [
        Override("progress", field, value, f"{flag} {value}")
        for field, flag, value in (
            ("plateau", "--plateau-threshold", args.plateau_threshold),
            ("improvement", "--improvement-threshold", args.improvement_threshold),
        )
        if value is not None
    ]
    sets = [parse_override(config, text) for text in args.overrides or ()]
    return apply_parsed(config, [*flags, *sets])


def _typed(name: str, value: object) -> Any:
    """A flag's value as RunConfig holds it."""
    return TelemetryLevel[str(value).upper()] if name == "telemetry_level" else value


def resolve(args: argparse.Namespace, resumed: Resumed | None = None) -> RunConfig:
    """The configuration, or a UsageError for flags and overrides that do not make one;
    with a checkpoint to resume, its configuration where a flag is not given."""
    if resumed is not None:
        refuse_conflicts(args, resumed)
    try:
        config = run_config(args, None if resumed is None else resumed.config)
    except ValueError as error:  # OverrideError included
        raise UsageError(str(error)) from None
    if config.recurrent and config.controller != "ppo":
        raise UsageError("--recurrent applies to the ppo controller only")
    if config.data_dir is not None and config.dataset != "cifar10":
        raise UsageError(
            f"--data-dir applies to --dataset cifar10 only; --dataset {config.dataset} "
            "reads no files"
        )
    return config


def show_config(config: RunConfig) -> str:
    """Every top-level field and every `section.field`, one `KEY = VALUE` a line; the
    values are written as `--set` takes them."""
    top = [
        (item.name, render(getattr(config, item.name)))
        for item in fields(config)
        if item.name not in sections(config)
    ]
    return "\n".join(f"{key} = {value}" for key, value in [*top, *config_table(config)])
