"""`SECTION.FIELD=VALUE` overrides (app/training/overrides.py): every field of every
RunConfig section is settable, typed from its annotation, with one-line errors, and the
table of every key can be pasted back."""

from __future__ import annotations

import dataclasses
from enum import Enum

import pytest

from app.training.config import RunConfig
from app.training.overrides import (
    OverrideError,
    apply_parsed,
    config_table,
    parse_override,
    sections,
)

DEFAULT = RunConfig()


def apply_overrides(config: RunConfig, texts: list[str]) -> RunConfig:
    """`config` with each `SECTION.FIELD=VALUE` applied, as `esper train --set` applies them."""
    return apply_parsed(config, [parse_override(config, text) for text in texts])


def test_values_are_parsed_from_each_fields_type() -> None:
    config = apply_overrides(
        DEFAULT,
        [
            "health.grad_exploding=1e4",  # float, in exponent notation
            "reward.germination_bonus=5",  # float from an integer literal
            "tracker.stabilization_epochs=4",  # int
            "ppo.clip_value=no",  # bool
            "heuristic.blueprints=conv_light, norm",  # tuple[str, ...]
            "ppo.action_prior=1.5,-2,0",  # tuple[float, ...] | None
            "ppo.chunk_length=8",  # int | None
            "ppo.target_kl=none",  # float | None
            "host.block3_width = 12",  # spaces around '=' are ignored
        ],
    )
    assert config.health.grad_exploding == 1e4
    assert config.reward.germination_bonus == 5.0
    assert isinstance(config.reward.germination_bonus, float)
    assert config.tracker.stabilization_epochs == 4
    assert config.ppo.clip_value is False
    assert config.heuristic.blueprints == ("conv_light", "norm")
    assert config.ppo.action_prior == (1.5, -2.0, 0.0)
    assert config.ppo.chunk_length == 8
    assert config.ppo.target_kl is None
    assert config.host.block3_width == 12
    # Untouched fields and sections keep their values.
    assert config.ppo.lr == DEFAULT.ppo.lr and config.slot == DEFAULT.slot


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("False", False), ("YES", True), ("no", False), ("1", True), ("0", False)],
)
def test_booleans(text: str, value: bool) -> None:
    assert apply_overrides(DEFAULT, [f"ppo.clip_value={text}"]).ppo.clip_value is value


def test_none_and_back() -> None:
    budget = apply_overrides(DEFAULT, ["health.epoch_time_budget_s=30"])
    assert budget.health.epoch_time_budget_s == 30.0
    cleared = apply_overrides(budget, ["health.epoch_time_budget_s=None"])
    assert cleared.health.epoch_time_budget_s is None
    assert apply_overrides(DEFAULT, ["ppo.action_prior=none"]).ppo.action_prior is None


def test_the_last_override_of_a_key_wins() -> None:
    config = apply_overrides(DEFAULT, ["reward.param_rent=1", "ppo.lr=0.1", "reward.param_rent=3"])
    assert config.reward.param_rent == 3.0 and config.ppo.lr == 0.1


def test_related_fields_can_be_changed_in_either_order() -> None:
    """A section is rebuilt once with all its overrides, so an intermediate state that
    its own check would refuse (grad_vanishing above the default grad_exploding) is fine."""
    config = apply_overrides(DEFAULT, ["health.grad_vanishing=2e3", "health.grad_exploding=1e4"])
    assert (config.health.grad_vanishing, config.health.grad_exploding) == (2e3, 1e4)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("health.grad_exploding=abc", "--set health.grad_exploding=abc: expected a float"),
        ("health.grad_exploding=nan", "--set health.grad_exploding=nan: expected a finite float"),
        ("health.grad_exploding=inf", "--set health.grad_exploding=inf: expected a finite float"),
        ("tracker.stabilization_epochs=2.5", "stabilization_epochs=2.5: expected an integer"),
        ("ppo.clip_value=maybe", "--set ppo.clip_value=maybe: expected true or false"),
        ("ppo.chunk_length=", "--set ppo.chunk_length=: expected an integer"),
        ("ppo.action_prior=1,x", "--set ppo.action_prior=1,x: expected a float, got 'x'"),
        ("helth.x=1", "--set helth.x=1: unknown section 'helth' (did you mean health?"),
        ("nothing.x=1", "unknown section 'nothing' (sections: anomaly, health,"),
        (
            "health.grad_explodng=1",
            "--set health.grad_explodng=1: unknown field 'grad_explodng' in health "
            "(did you mean grad_exploding?)",
        ),
        ("health.zzz=1", "unknown field 'zzz' in health (fields: epoch_time_budget_s,"),
        ("health.grad_exploding", "--set health.grad_exploding: expected SECTION.FIELD=VALUE"),
        ("=1", "--set =1: expected SECTION.FIELD=VALUE"),
        ("health=1", "--set health=1: expected SECTION.FIELD=VALUE"),
        ("envs=8", "--set envs=8: envs is not a section; use --envs"),
        ("max_epochs=8", "--set max_epochs=8: max_epochs is not a section; use --max-epochs"),
        # The section's own __post_init__ check, reported against the override.
        (
            "health.grad_vanishing=1e5",
            "--set health.grad_vanishing=1e5: health.grad_vanishing must be less than "
            "grad_exploding (1000), got 100000",
        ),
        (
            "progress.plateau=3",
            "--set progress.plateau=3: progress.plateau must be at least 0 and at most "
            "improvement (2), got 3",
        ),
    ],
)
def test_errors_name_the_override_and_the_problem(override: str, message: str) -> None:
    with pytest.raises(OverrideError) as caught:
        apply_overrides(DEFAULT, [override])
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_failed_section_check_names_every_override_of_that_section() -> None:
    with pytest.raises(
        OverrideError,
        match=r"^--set progress\.improvement=0\.1, --set progress\.plateau=0\.2: progress\.plat",
    ):
        apply_overrides(DEFAULT, ["progress.improvement=0.1", "progress.plateau=0.2", "ppo.lr=1"])


class _Colour(Enum):
    RED = 1
    DARK_BLUE = 2


@dataclasses.dataclass(frozen=True)
class _Section:
    colour: _Colour = _Colour.RED
    weights: dict[str, float] = dataclasses.field(default_factory=dict)


# RunConfig does not check its sections' types, so a stand-in section tests what no real
# field has today: an enum, and a type with no command-line syntax.
WITH_FAKE_SECTION = dataclasses.replace(DEFAULT, reward=_Section())  # type: ignore[arg-type]


def test_enums_by_name_in_any_case() -> None:
    config = apply_overrides(WITH_FAKE_SECTION, ["reward.colour=dark_Blue"])
    assert config.reward.colour is _Colour.DARK_BLUE  # type: ignore[attr-defined]
    with pytest.raises(
        OverrideError, match=r"reward\.colour=green: expected one of red, dark_blue"
    ):
        apply_overrides(WITH_FAKE_SECTION, ["reward.colour=green"])


def test_a_type_without_syntax_is_refused_clearly() -> None:
    with pytest.raises(
        OverrideError,
        match=r"weights=a: weights is a dict\[str, float\], which cannot be set from the command",
    ):
        apply_overrides(WITH_FAKE_SECTION, ["reward.weights=a"])


def test_config_table_lists_every_field_of_every_section_in_order() -> None:
    keys = [key for key, _ in config_table(DEFAULT)]
    expected = [
        f"{name}.{item.name}"
        for name, section in sections(DEFAULT).items()
        for item in dataclasses.fields(section)
    ]
    assert keys == expected
    assert {key.split(".")[0] for key in keys} >= {"health", "ppo", "reward", "progress"}


def _changed(config: RunConfig) -> RunConfig:
    """A config where no field has its default, so a round trip proves each value."""
    return apply_overrides(
        config,
        [
            "host.block3_width=8",
            "ppo.chunk_length=6",
            "ppo.target_kl=none",
            "ppo.action_prior=0.5,1e-05,-3",
            "heuristic.blueprints=norm",
            "health.epoch_time_budget_s=12.5",
            "health.grad_vanishing=1e-09",
            "ppo.clip_value=false",
        ],
    )


@pytest.mark.parametrize("config", [DEFAULT, _changed(DEFAULT)], ids=["default", "changed"])
def test_every_printed_value_sets_the_same_config(config: RunConfig) -> None:
    """Fails for any field whose type cannot be set, so every current field is settable."""
    for key, value in config_table(config):
        assert apply_overrides(config, [f"{key}={value}"]) == config, key
        section, field = key.split(".")
        one = apply_overrides(DEFAULT, [f"{key}={value}"])
        assert getattr(getattr(one, section), field) == getattr(getattr(config, section), field)
    pasted = apply_overrides(DEFAULT, [f"{key}={value}" for key, value in config_table(config)])
    assert pasted == config


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("host.width=0", "host.width must be at least 1, got 0"),
        ("host.batch_size=0", "host.batch_size must be at least 1, got 0"),
        ("host.lr=0", "host.lr must be greater than 0, got 0"),
        ("host.lr_decay=1.5", "host.lr_decay must be greater than 0 and at most 1, got 1.5"),
        (
            "heuristic.blueprints=conv_light,foo",
            "heuristic.blueprints must be one or more of conv_light, conv_heavy, depthwise, "
            "attention, norm, got conv_light,foo",
        ),
        (
            "heuristic.blueprints=",
            "heuristic.blueprints must be one or more of conv_light, conv_heavy, depthwise, "
            "attention, norm, got nothing",
        ),
        ("heuristic.plateau_patience=-1", "heuristic.plateau_patience must be at least 0, got -1"),
        (
            "tracker.stabilization_epochs=0",
            "tracker.stabilization_epochs must be at least 1, got 0",
        ),
        ("ppo.lr=-1", "ppo.lr must be greater than 0, got -1"),
        ("ppo.gamma=1.5", "ppo.gamma must be between 0 and 1, got 1.5"),
    ],
)
def test_sizes_and_names_are_validated_before_training(override: str, named: str) -> None:
    """The section's own check, with the field named by its section as it was typed."""
    with pytest.raises(OverrideError) as error:
        apply_overrides(DEFAULT, [override])
    assert str(error.value) == f"--set {override}: {named}"
