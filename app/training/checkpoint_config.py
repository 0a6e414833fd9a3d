"""What a checkpoint records about the run that wrote it, beside the state it continues
from: that run's id and its whole configuration.

`--resume FILE` alone then continues with the checkpoint's own configuration, and the
resumed run names the run it continues. Both are plain data (strings, numbers, lists and
dicts), which `torch.load(weights_only=True)` reads back. A checkpoint written before they
were recorded lacks them: its configuration is then the defaults with the setup it does
record (`run_setup`), and the run that wrote it is unknown.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from app.contracts.events import TelemetryLevel
from app.settings import render
from app.training.checkpoint import CheckpointError
from app.training.config import RunConfig
from app.training.overrides import OverrideError, apply_parsed, parse_override, sections
from app.training.resume import run_setup
from app.training.run_basics import RunBasics

RUN_ID_KEY = "run_id"
CONFIG_KEY = "config"


def config_document(config: RunConfig) -> dict[str, Any]:
    """`config` as plain data: a dict per section, enums by name ("normal"), tuples as
    lists and paths as strings; JSON as it stands."""
    plain: dict[str, Any] = _plain(dataclasses.asdict(config))
    return plain


def checkpoint_identity(run_id: str, config: RunConfig) -> dict[str, Any]:
    """The entries a checkpoint of this run carries beside its state."""
    return {RUN_ID_KEY: run_id, CONFIG_KEY: config_document(config)}


def saved_run_id(state: Mapping[str, Any]) -> str | None:
    """The id of the run that wrote the checkpoint; None when it does not record one."""
    value = state.get(RUN_ID_KEY)
    if value is not None and not isinstance(value, str):
        raise CheckpointError(f"run_id is a {type(value).__name__}, not a string")
    return value


def saved_config(state: Mapping[str, Any]) -> RunConfig:
    """The configuration the checkpoint was written with; CheckpointError names an entry
    of it that this esper cannot take."""
    document = state.get(CONFIG_KEY)
    if document is None:  # written before checkpoints recorded their configuration
        return _from_setup(state)
    if not isinstance(document, dict):
        raise CheckpointError(f"config is a {type(document).__name__}, not a dict")
    top = {item.name for item in dataclasses.fields(RunBasics)}
    config = _built(lambda: RunConfig(**_top_level(document)))
    try:
        overrides = [
            parse_override(config, f"{name}.{key}={_typed(value)}")
            for name, section in document.items()
            if name not in top
            for key, value in _section(name, section).items()
        ]
        return apply_parsed(config, overrides)
    except OverrideError as error:
        raise CheckpointError(f"config does not fit this esper: {error}") from None


def _plain(value: object) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Enum):
        return value.name.lower()
    if isinstance(value, Path):
        return str(value)
    return value


def _from_setup(state: Mapping[str, Any]) -> RunConfig:
    """The defaults with the setup the checkpoint records, each of the default's type."""
    default = RunConfig()
    values: dict[str, Any] = {}
    for key, expected in run_setup(default).items():
        value = state.get(key)
        if type(value) is not type(expected):
            raise CheckpointError(f"{key} is {value!r}, not a {type(expected).__name__}")
        values[key] = value
    return _built(lambda: dataclasses.replace(default, **values))


def _top_level(document: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level settings of a configuration document, typed as RunBasics types them."""
    values: dict[str, Any] = {}
    for item in dataclasses.fields(RunBasics):
        if item.name not in document:
            raise CheckpointError(f"config.{item.name} is missing")
        value, default = document[item.name], item.default
        if item.name == "data_dir":
            ok = value is None or isinstance(value, str)
            value = None if value is None else Path(value)
        elif item.name == "telemetry_level":
            ok = value in {level.name.lower() for level in TelemetryLevel}
            value = TelemetryLevel[str(value).upper()] if ok else value
        else:
            ok = type(value) is type(default)
        if not ok:
            raise CheckpointError(f"config.{item.name} is {value!r}, not a setting of it")
        values[item.name] = value
    return values


def _section(name: str, section: object) -> dict[str, Any]:
    if name not in sections(RunConfig()):
        raise CheckpointError(f"config.{name} is not a section this esper knows")
    if not isinstance(section, dict):
        raise CheckpointError(f"config.{name} is a {type(section).__name__}, not a dict")
    return section


def _typed(value: object) -> str:
    """A section's value as `--set` takes it."""
    return render(tuple(value) if isinstance(value, list) else value)


def _built(build: Callable[[], RunConfig]) -> RunConfig:
    try:
        config = build()
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"config does not fit this esper: {error}") from None
    return config
