"""The seed lifecycle of a slot: automatic transitions, controller actions, their gates and
the events they emit (shapes as in the legacy log)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
from helpers import EventRecorder

from app.contracts.events import EventType
from app.contracts.stages import SeedStage
from app.model.slot import SeedSlot, SlotConfig

Driver = Callable[[SeedSlot, SeedStage], None]

CONTRACT_FIELDS = {
    EventType.SEED_GERMINATED: {"blueprint_id", "seed_id", "params", "env_id"},
    EventType.SEED_STAGE_CHANGED: {"from", "to", "env_id"},
    EventType.SEED_FOSSILIZED: {
        "blueprint_id",
        "seed_id",
        "improvement",
        "blending_delta",
        "counterfactual",
        "params_added",
        "epochs_total",
        "epochs_in_stage",
        "env_id",
    },
    EventType.SEED_CULLED: {
        "reason",
        "blueprint_id",
        "seed_id",
        "improvement",
        "blending_delta",
        "counterfactual",
        "epochs_total",
        "epochs_in_stage",
        "env_id",
    },
}


def stage_changes(events: EventRecorder) -> list[tuple[str, str]]:
    changes = events.of_type(EventType.SEED_STAGE_CHANGED)
    return [(event.data["from"], event.data["to"]) for event in changes]


def make_slot(config: SlotConfig | None = None) -> SeedSlot:
    return SeedSlot("block2_post", channels=4, env_id=1, config=config)


def step_in_probation(slot: SeedSlot, drive: Driver, contribution: float) -> None:
    """Bring a fresh slot's seed to PROBATIONARY, the last measured contribution given."""
    slot.germinate("conv_light", "env1_seed_0")
    drive(slot, SeedStage.SHADOWING)
    slot.step_epoch(80.0, 80.0 - contribution)
    assert slot.stage == SeedStage.PROBATIONARY


def test_full_lifecycle_emits_the_legacy_stage_sequence(
    events: EventRecorder, drive: Driver
) -> None:
    slot = make_slot()
    slot.step_epoch(70.0, epoch=4)
    assert slot.germinate("conv_light", "env1_seed_0")
    drive(slot, SeedStage.PROBATIONARY)
    assert slot.fossilize()

    assert slot.stage == SeedStage.FOSSILIZED
    assert stage_changes(events) == [
        ("GERMINATED", "TRAINING"),
        ("TRAINING", "BLENDING"),
        ("BLENDING", "SHADOWING"),
        ("SHADOWING", "PROBATIONARY"),
        ("PROBATIONARY", "FOSSILIZED"),
    ]
    assert events[0].event_type == EventType.SEED_GERMINATED
    assert events[-1].event_type == EventType.SEED_FOSSILIZED
    fossilized = events[-1].data
    assert fossilized["improvement"] == pytest.approx(10.0)
    assert fossilized["blending_delta"] == pytest.approx(0.0)
    assert fossilized["counterfactual"] == pytest.approx(2.0)
    assert fossilized["epochs_total"] == 3 + 5 + 1
    assert fossilized["epochs_in_stage"] == 0
    assert fossilized["params_added"] == slot.state.params > 0


def test_fossilized_seed_stays_in_the_forward_path_and_blocks_the_slot(drive: Driver) -> None:
    slot = make_slot()
    step_in_probation(slot, drive, contribution=2.0)
    assert slot.fossilize()
    h = torch.relu(torch.randn(2, 4, 3, 3))
    assert slot.seed is not None
    assert torch.equal(slot(h), h + slot.seed(h))
    assert not slot.is_active
    assert not slot.germinate("norm", "env1_seed_1")


def test_alpha_ramps_over_the_blending_epochs(drive: Driver) -> None:
    slot = make_slot(SlotConfig(training_epochs=2, blending_epochs=4))
    slot.germinate("depthwise", "s0")
    observed = []
    while slot.stage != SeedStage.SHADOWING:
        observed.append((slot.stage, slot.alpha))
        slot.step_epoch(80.0, 78.0 if slot.contributes else None)
    assert observed == [
        (SeedStage.TRAINING, 0.0),
        (SeedStage.TRAINING, 0.0),
        (SeedStage.BLENDING, pytest.approx(0.25)),
        (SeedStage.BLENDING, pytest.approx(0.5)),
        (SeedStage.BLENDING, pytest.approx(0.75)),
        (SeedStage.BLENDING, pytest.approx(1.0)),
    ]
    assert slot.alpha == 1.0


def test_contribution_is_what_the_seed_adds_while_it_reaches_the_host(drive: Driver) -> None:
    slot = make_slot(SlotConfig(training_epochs=2, blending_epochs=2))
    assert slot.contribution == 0.0
    slot.germinate("conv_heavy", "s0")
    slot.step_epoch(80.0)
    assert slot.stage == SeedStage.TRAINING and slot.contribution == 0.0
    slot.step_epoch(80.0)
    assert slot.stage == SeedStage.BLENDING and slot.contribution == 0.0  # not measured yet
    slot.step_epoch(79.0, 80.5)
    assert slot.contribution == pytest.approx(-1.5)
    slot.step_epoch(83.0, 80.0)
    assert slot.contribution == pytest.approx(3.0)
    drive(slot, SeedStage.PROBATIONARY)
    slot.step_epoch(84.0, 82.0)
    assert slot.fossilize()
    slot.step_epoch(85.0)
    assert slot.contribution == pytest.approx(2.0)  # permanent: its last measure stands


def test_a_culled_seed_contributes_nothing(drive: Driver) -> None:
    slot = make_slot()
    step_in_probation(slot, drive, contribution=2.0)
    assert slot.contribution == pytest.approx(2.0)
    assert slot.cull("controller")
    assert slot.contribution == 0.0
    slot.step_epoch(80.0)
    assert slot.stage == SeedStage.EMBARGOED and slot.contribution == 0.0


def test_fossilize_passes_the_gate_at_the_minimum(events: EventRecorder, drive: Driver) -> None:
    slot = make_slot(SlotConfig(min_fossilize_improvement=0.5))
    step_in_probation(slot, drive, contribution=0.5)
    assert slot.fossilize()
    assert events.of_type(EventType.SEED_FOSSILIZED)


def test_fossilize_below_the_gate_changes_nothing(events: EventRecorder, drive: Driver) -> None:
    slot = make_slot(SlotConfig(min_fossilize_improvement=0.5))
    step_in_probation(slot, drive, contribution=0.25)
    before, emitted = slot.state, len(events)
    assert not slot.fossilize()
    assert slot.state == before
    assert len(events) == emitted


def test_fossilize_while_training_changes_nothing(events: EventRecorder) -> None:
    slot = make_slot()
    slot.germinate("conv_light", "s0")
    before, emitted = slot.state, len(events)
    assert not slot.fossilize()
    assert slot.state == before
    assert len(events) == emitted


def test_germinating_a_busy_slot_fails_quietly(events: EventRecorder) -> None:
    slot = make_slot()
    assert slot.germinate("conv_light", "s0")
    emitted = len(events)
    assert not slot.germinate("conv_heavy", "s1")
    assert slot.seed_id == "s0"
    assert len(events) == emitted


def test_unknown_blueprint_raises_and_leaves_the_slot_empty() -> None:
    slot = make_slot()
    with pytest.raises(ValueError, match="unknown blueprint"):
        slot.germinate("mlp", "s0")
    assert slot.stage == SeedStage.DORMANT
    assert slot.seed is None


def test_cull_embargoes_the_slot_then_frees_it(events: EventRecorder) -> None:
    slot = make_slot(SlotConfig(embargo_epochs=2))
    slot.germinate("attention", "s0")
    assert slot.cull("controller")
    assert slot.seed is None
    assert not slot.cull("again")
    slot.step_epoch(80.0)
    assert slot.stage == SeedStage.EMBARGOED
    assert not slot.germinate("attention", "s1")
    slot.step_epoch(80.0)
    assert slot.stage == SeedStage.EMBARGOED
    slot.step_epoch(80.0)
    assert slot.stage == SeedStage.DORMANT
    assert stage_changes(events)[1:] == [
        ("TRAINING", "CULLED"),
        ("CULLED", "EMBARGOED"),
        ("EMBARGOED", "DORMANT"),
    ]
    assert events.of_type(EventType.SEED_CULLED)[0].data["reason"] == "controller"
    assert slot.germinate("attention", "s1")


def test_probation_times_out_with_a_cull(events: EventRecorder, drive: Driver) -> None:
    slot = make_slot(SlotConfig(probation_max_epochs=2))
    step_in_probation(slot, drive, contribution=2.0)
    slot.step_epoch(80.0, 78.0)
    assert slot.stage == SeedStage.PROBATIONARY
    slot.step_epoch(80.0, 78.0)
    assert slot.stage == SeedStage.CULLED
    culled = events.of_type(EventType.SEED_CULLED)
    assert [event.data["reason"] for event in culled] == ["probation_timeout"]
    assert culled[0].data["epochs_in_stage"] == 2


def test_culled_seed_leaves_the_forward_path() -> None:
    slot = make_slot(SlotConfig(training_epochs=1))
    slot.germinate("conv_light", "s0")
    slot.step_epoch(80.0)
    h = torch.relu(torch.randn(2, 4, 3, 3))
    assert not torch.equal(slot(h), h)
    slot.cull("controller")
    assert torch.equal(slot(h), h)


def test_disabled_slot_is_the_counterfactual_host() -> None:
    slot = make_slot(SlotConfig(training_epochs=1))
    slot.germinate("conv_light", "s0")
    slot.step_epoch(80.0)
    h = torch.relu(torch.randn(2, 4, 3, 3))
    with slot.disabled():
        assert torch.equal(slot(h), h)
    assert not torch.equal(slot(h), h)


def test_events_carry_exactly_the_contract_fields(events: EventRecorder, drive: Driver) -> None:
    fossil = make_slot()
    step_in_probation(fossil, drive, contribution=2.0)
    fossil.fossilize()
    culled = make_slot()
    culled.germinate("norm", "env1_seed_1")
    culled.step_epoch(80.0, epoch=12)
    culled.cull("controller")
    culled.step_epoch(80.0, epoch=13)

    assert {event.event_type for event in events} == set(CONTRACT_FIELDS)
    for event in events:
        assert set(event.data) == CONTRACT_FIELDS[event.event_type], event.event_type
        assert event.data["env_id"] == 1
        assert event.slot_id == "block2_post"
        assert event.seed_id in {"env1_seed_0", "env1_seed_1"}
        assert event.message
    assert [event.epoch for event in events[-3:]] == [12, 12, 13]


def test_germinated_event_matches_the_seed(events: EventRecorder) -> None:
    slot = make_slot()
    slot.germinate("conv_heavy", "env1_seed_0")
    germinated = events.of_type(EventType.SEED_GERMINATED)[0]
    assert germinated.seed_id == "env1_seed_0"
    assert germinated.data == {
        "blueprint_id": "conv_heavy",
        "seed_id": "env1_seed_0",
        "params": slot.state.params,
        "env_id": 1,
    }


def test_state_is_a_copy() -> None:
    slot = make_slot()
    slot.state.alpha = 0.5
    assert slot.alpha == 0.0


def test_new_seed_follows_the_slot_dtype_and_mode() -> None:
    slot = make_slot().double().eval()
    slot.germinate("conv_light", "s0")
    assert slot.seed is not None
    assert all(p.dtype == torch.float64 for p in slot.seed.parameters())
    assert not slot.seed.training


@pytest.mark.parametrize("field", ["training_epochs", "blending_epochs", "embargo_epochs"])
def test_config_rejects_non_positive_durations(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        replace(SlotConfig(), **{field: 0})
