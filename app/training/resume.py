"""What a checkpoint must hold to continue a run, each field checked before any is used.

A checkpoint's digest proves that its bytes are the ones written; these checks prove that
what was written fits this run: the same setup, progress counts that a run can reach, and
random states and an agent state of the right types and shapes. Every failure names the
field and what does not fit, in one line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.training.checkpoint import CheckpointError
from app.training.config import RunConfig
from app.training.progress import HISTORY_LENGTH


@dataclass(frozen=True)
class ResumeState:
    """A checkpoint's progress and random states, checked against the run's setup."""

    batches_completed: int
    episodes_completed: int
    accuracies: list[float]
    rewards: list[float]
    escalation_remaining: int
    torch_rng: torch.Tensor
    env_rng: list[torch.Tensor]
    seeds_grown: list[int]


def run_setup(config: RunConfig) -> dict[str, Any]:
    """The settings a checkpoint must share with the run that resumes it."""
    return {
        "controller": config.controller,
        "recurrent": config.recurrent,
        "envs": config.envs,
        "dataset": config.dataset,
        "max_epochs": config.max_epochs,
    }


def check_setup(state: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """Raise CheckpointError unless the checkpoint was written by a run of the same setup
    (`expected` maps each setting that must match to this run's value)."""
    for key, value in expected.items():
        written = state.get(key)
        if written != value or type(written) is not type(value):
            raise CheckpointError(f"written with {key}={written!r}, this run has {key}={value!r}")


def read_state(state: Mapping[str, Any], envs: int) -> ResumeState:
    """The checkpoint's progress for a run of `envs` environments, every field checked."""
    batches = _count(state, "batches_completed")
    episodes = _count(state, "episodes_completed")
    # Every batch runs one episode per environment, the last one possibly fewer.
    low, high = max(0, (batches - 1) * envs + 1), batches * envs
    if not low <= episodes <= high:
        raise CheckpointError(
            f"episodes_completed is {episodes}, but {batches} batches of {envs} "
            f"environments complete {_span(low, high)} episodes"
        )
    history = min(batches, HISTORY_LENGTH)
    return ResumeState(
        batches_completed=batches,
        episodes_completed=episodes,
        accuracies=_history(state, "accuracies", history, 0.0, 100.0),
        rewards=_history(state, "rewards", history, -math.inf, math.inf),
        escalation_remaining=_count(state, "escalation_remaining"),
        torch_rng=_rng_state(state.get("torch_rng"), "torch_rng"),
        env_rng=[
            _rng_state(item, f"env_rng[{env}]")
            for env, item in enumerate(_list(state, "env_rng", envs))
        ],
        seeds_grown=[
            _non_negative(item, f"seeds_grown[{env}]")
            for env, item in enumerate(_list(state, "seeds_grown", envs))
        ],
    )


def check_resumable(path: Path, state: Mapping[str, Any], config: RunConfig) -> None:
    """Raise CheckpointError, naming `path`, unless the run can continue from `state`:
    the same setup, sound progress, and episodes left to run."""
    try:
        check_setup(state, run_setup(config))
        done = read_state(state, config.envs).episodes_completed
    except CheckpointError as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from None
    if done >= config.episodes:
        completed = (
            f"{done} of {config.episodes} episodes"
            if done == config.episodes
            else f"{done} episodes, more than --episodes {config.episodes}"
        )
        raise CheckpointError(
            f"checkpoint {path} has completed {completed}; nothing left to run "
            "(raise --episodes to continue)"
        )


def check_agent_state(agent: Any, network: Mapping[str, torch.Tensor]) -> None:
    """Raise CheckpointError unless `agent` is an agent state whose network has exactly
    the parameters of `network` (this run's), with the same shapes."""
    if not isinstance(agent, dict):
        raise CheckpointError(f"agent state is {_kind(agent)}, not a dict")
    for key in ("network", "optimizer", "train_steps"):
        if key not in agent:
            raise CheckpointError(f"agent state is missing {key!r}")
    _non_negative(agent["train_steps"], "agent train_steps")
    written = agent["network"]
    if not isinstance(written, dict):
        raise CheckpointError(f"agent network is {_kind(written)}, not a dict")
    for name, tensor in network.items():
        if name not in written:
            raise CheckpointError(f"agent network is missing {name!r}")
        value = written[name]
        if not isinstance(value, torch.Tensor) or value.shape != tensor.shape:
            shape = list(value.shape) if isinstance(value, torch.Tensor) else _kind(value)
            raise CheckpointError(
                f"agent network {name!r} is {shape}, this run's is {list(tensor.shape)}"
            )
    extra = sorted(str(name) for name in written if name not in network)
    if extra:
        raise CheckpointError(f"agent network has unknown {extra[0]!r}")
    optimizer = agent["optimizer"]
    if not isinstance(optimizer, dict) or not {"state", "param_groups"} <= set(optimizer):
        raise CheckpointError("agent optimizer state lacks 'state' or 'param_groups'")


def _count(state: Mapping[str, Any], name: str) -> int:
    if name not in state:
        raise CheckpointError(f"{name} is missing")
    return _non_negative(state[name], name)


def _non_negative(value: Any, name: str) -> int:
    if type(value) is not int or value < 0:
        raise CheckpointError(f"{name} is {_shown(value)}, not a non-negative integer")
    return value


def _list(state: Mapping[str, Any], name: str, length: int) -> Sequence[Any]:
    value = state.get(name)
    if not isinstance(value, list):
        raise CheckpointError(f"{name} is {_kind(value)}, not a list")
    if len(value) != length:
        raise CheckpointError(f"{name} has {len(value)} items, this run needs {length}")
    return value


def _history(
    state: Mapping[str, Any], name: str, length: int, low: float, high: float
) -> list[float]:
    values = _list(state, name, length)
    for index, value in enumerate(values):
        ok = type(value) in (int, float) and math.isfinite(value) and low <= value <= high
        if not ok:
            bounds = "a finite number" if math.isinf(low) else f"a number from {low} to {high}"
            raise CheckpointError(f"{name}[{index}] is {_shown(value)}, not {bounds}")
    return [float(value) for value in values]


def _rng_state(value: Any, name: str) -> torch.Tensor:
    """A CPU generator's state: a uint8 tensor of the size torch's generator has."""
    expected = torch.get_rng_state()
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{name} is {_kind(value)}, not a random generator state")
    if value.dtype != expected.dtype or value.shape != expected.shape:
        raise CheckpointError(
            f"{name} is a {value.dtype} tensor of shape {list(value.shape)}, not a random "
            f"generator state ({expected.dtype}, {list(expected.shape)})"
        )
    return value


def _span(low: int, high: int) -> str:
    return str(low) if low == high else f"{low} to {high}"


def _kind(value: Any) -> str:
    return "missing" if value is None else f"a {type(value).__name__}"


def _shown(value: Any) -> str:
    """A value from the file, in one short line."""
    text = ascii(value)
    return text if len(text) <= 40 else text[:37] + "..."
