"""The checks every settings section runs (app/settings.py): one phrasing for every bad
value, `OWNER.FIELD must be REQUIREMENT, got VALUE`, with bounds that mean what they say."""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from typing import Any

import pytest

from app.control.heuristic import HeuristicConfig
from app.control.tracker import TrackerConfig
from app.model.slot import SlotConfig
from app.rl.anomaly import AnomalyThresholds
from app.rl.ppo_config import PPOConfig
from app.rl.reward_hacking import RewardHackingConfig
from app.rl.rewards import RewardConfig
from app.settings import ConfigError
from app.training.config import RunConfig
from app.training.environment import HostConfig
from app.training.health import HostHealthConfig
from app.training.memory import MemoryConfig, MemoryLimit
from app.training.overrides import sections

PHRASING = re.compile(r"^(?P<owner>\w+)\.(?P<field>\w+) must be (?P<requirement>.+), got \S+$")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PPOConfig(lr=-1), "PPOConfig.lr must be greater than 0, got -1"),
        (lambda: PPOConfig(gamma=1.5), "PPOConfig.gamma must be between 0 and 1, got 1.5"),
        (
            lambda: PPOConfig(num_minibatches=0),
            "PPOConfig.num_minibatches must be at least 1, got 0",
        ),
        (
            lambda: TrackerConfig(stabilization_threshold=1.0),
            "TrackerConfig.stabilization_threshold must be greater than 0 and less than 1, got 1",
        ),
        (
            lambda: TrackerConfig(stabilization_epochs=0),
            "TrackerConfig.stabilization_epochs must be at least 1, got 0",
        ),
        (
            lambda: TrackerConfig(spike_factor=1.0),
            "TrackerConfig.spike_factor must be greater than 1, got 1",
        ),
        (
            lambda: SlotConfig(blending_epochs=0),
            "SlotConfig.blending_epochs must be at least 1, got 0",
        ),
        (
            lambda: HostConfig(lr_decay=0.0),
            "HostConfig.lr_decay must be greater than 0 and at most 1, got 0",
        ),
        (
            lambda: HostHealthConfig(grad_vanishing=2e3),
            "HostHealthConfig.grad_vanishing must be less than grad_exploding (1000), got 2000",
        ),
        (
            lambda: HeuristicConfig(blueprints=("norm", "mlp")),
            "HeuristicConfig.blueprints must be one or more of conv_light, conv_heavy, depthwise, "
            "attention, norm, got norm,mlp",
        ),
        (
            lambda: AnomalyThresholds(escalation_updates=-1),
            "AnomalyThresholds.escalation_updates must be at least 0, got -1",
        ),
        (
            lambda: RewardConfig(param_rent=math.inf),
            "RewardConfig.param_rent must be finite and at least 0, got inf",
        ),
        (
            lambda: RewardHackingConfig(accuracy_trend_t=-math.inf),
            "RewardHackingConfig.accuracy_trend_t must be finite, got -inf",
        ),
        (
            lambda: MemoryConfig(warning_fraction=2.0),
            "MemoryConfig.warning_fraction must be greater than 0 and at most 1, got 2",
        ),
        (
            lambda: MemoryLimit(-5, "cgroup"),
            "MemoryLimit.limit_bytes must be greater than 0, got -5",
        ),
        (
            lambda: RunConfig(controller="rules"),
            "RunConfig.controller must be one of ppo, heuristic, static, got rules",
        ),
        (lambda: RunConfig(max_epochs=1), "RunConfig.max_epochs must be at least 2, got 1"),
    ],
)
def test_each_section_says_what_its_field_must_be_and_what_it_got(
    make: typing.Callable[[], object], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        make()
    assert str(error.value) == message
    assert isinstance(error.value, ValueError)


def test_the_bounds_include_or_exclude_their_edge_as_worded() -> None:
    # "between 0 and 1" and "at most 1" include the edge, "greater than 0" excludes it.
    assert PPOConfig(gamma=0.0, gae_lambda=1.0).gamma == 0.0
    assert MemoryConfig(warning_fraction=1.0).warning_fraction == 1.0
    assert MemoryConfig(hysteresis=0.0).hysteresis == 0.0
    with pytest.raises(ConfigError, match=r"greater than 0 and at most 1, got 0$"):
        MemoryConfig(warning_fraction=0.0)
    # "less than" another field excludes its value.
    with pytest.raises(ConfigError, match=r"less than warning_fraction \(0\.5\), got 0\.5$"):
        MemoryConfig(warning_fraction=0.5, hysteresis=0.5)


def test_none_switches_a_checked_field_off() -> None:
    assert PPOConfig(target_kl=None, chunk_length=None).target_kl is None
    assert HostConfig(block3_width=None).block3_width is None
    assert HostHealthConfig(epoch_time_budget_s=None).epoch_time_budget_s is None


@pytest.mark.parametrize(
    "make",
    [
        lambda: PPOConfig(lr=math.nan),
        lambda: PPOConfig(gamma=math.nan),
        lambda: TrackerConfig(spike_factor=math.nan),
        lambda: MemoryConfig(hysteresis=math.nan),
        lambda: RewardConfig(germination_bonus=math.nan),
    ],
)
def test_nan_fails_every_check(make: typing.Callable[[], object]) -> None:
    with pytest.raises(ConfigError, match=r", got nan$"):
        make()


def _numbers(section: object) -> list[str]:
    hints = typing.get_type_hints(type(section))
    numeric = (int, float, int | None, float | None)
    return [item.name for item in dataclasses.fields(section) if hints[item.name] in numeric]


@pytest.mark.parametrize("name", list(sections(RunConfig())))
def test_every_refusal_of_every_section_has_the_one_phrasing(name: str) -> None:
    """Each numeric field of each section set to values a check may refuse: whatever is
    refused is a ConfigError naming the section's class and the field it was given."""
    section = sections(RunConfig())[name]
    refused = 0
    for field in _numbers(section):
        for value in (-1e9, -1, 0, 1e9, math.nan, math.inf):
            changes: dict[str, Any] = {field: value}
            try:
                dataclasses.replace(section, **changes)
            except ConfigError as error:
                refused += 1
                match = PHRASING.match(str(error))
                assert match, str(error)
                assert match["owner"] == type(section).__name__
                assert match["field"] in {item.name for item in dataclasses.fields(section)}
    assert refused > 0, f"{name}: no value of any field is checked"
