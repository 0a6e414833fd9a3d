"""A run's configuration from the command line: the dedicated flags, then `--set`, and
the table that `--show-config` prints."""

from __future__ import annotations

import argparse
from dataclasses import fields

from app.cli.errors import UsageError
from app.contracts.events import TelemetryLevel
from app.settings import render
from app.training.config import RunConfig
from app.training.overrides import Override, apply_parsed, config_table, parse_override, sections


def run_config(args: argparse.Namespace) -> RunConfig:
    """The run's configuration: the dedicated flags, then each --set in order, so that
    --set wins for a field that a flag also sets. The progress flags are overrides of
    their own, applied with the --set ones for the same section, so that
    `--plateau-threshold 3 --set progress.improvement=5` is checked as a whole."""
    config = RunConfig(
        controller=args.controller,
        recurrent=args.recurrent,
        envs=args.envs,
        episodes=args.episodes,
        max_epochs=args.max_epochs,
        dataset=args.dataset,
        data_dir=args.data_dir,
        seed=args.seed,
        device=args.device,
        telemetry_level=TelemetryLevel[args.telemetry_level.upper()],
    )
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


def resolve(args: argparse.Namespace) -> RunConfig:
    """The configuration, or a UsageError for flags and overrides that do not make one."""
    if args.recurrent and args.controller != "ppo":
        raise UsageError("--recurrent applies to the ppo controller only")
    try:
        return run_config(args)
    except ValueError as error:  # OverrideError included
        raise UsageError(str(error)) from None


def show_config(config: RunConfig) -> str:
    """Every top-level field and every `section.field`, one `KEY = VALUE` a line; the
    values are written as `--set` takes them."""
    top = [
        (item.name, render(getattr(config, item.name)))
        for item in fields(config)
        if item.name not in sections(config)
    ]
    return "\n".join(f"{key} = {value}" for key, value in [*top, *config_table(config)])
