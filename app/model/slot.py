"""A seed slot: one position in the host where a seed lives through its lifecycle.

The slot owns the seed module, its stage and the numbers the lifecycle decisions rest on
(epochs per stage, alpha, accuracy at germination and at blending start, the measured
counterfactual contribution). The trainer drives it with `step_epoch` once per epoch; the
controller acts on it with `germinate`, `fossilize` and `cull`. Every transition is checked
against the contract's transition table and reported as a domain event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor, nn

from app import telemetry
from app.contracts.events import EventType, TelemetryEvent
from app.contracts.seeds import SeedState
from app.contracts.stages import CONTRIBUTING_STAGES, SeedStage, can_transition
from app.model.blueprints import build_seed, count_params
from app.settings import check

# The stages a seed ends in, in the order a summary reports them.
OUTCOMES = (SeedStage.FOSSILIZED, SeedStage.CULLED)


class InvalidTransitionError(RuntimeError):
    """A lifecycle step the contract's transition table forbids (a bug in the slot)."""


@dataclass(frozen=True)
class SlotConfig:
    """How long each automatic stage lasts (in epochs) and what fossilization requires.

    Blending runs `blending_epochs` epochs with alpha 1/n, 2/n, ..., 1, so every blending
    epoch trains the seed. `min_fossilize_improvement` is in percentage points of
    counterfactual contribution (val accuracy with the seed minus without it).
    """

    training_epochs: int = 3
    blending_epochs: int = 5
    shadowing_epochs: int = 1
    probation_max_epochs: int = 5
    embargo_epochs: int = 3
    min_fossilize_improvement: float = 0.5

    def __post_init__(self) -> None:
        epochs = [item.name for item in fields(self) if item.name.endswith("_epochs")]
        check(self, *epochs, ge=1)


class SeedSlot(nn.Module):
    """One seed position in the host, e.g. `block2_post`, and the seed's lifecycle."""

    seed: nn.Module | None
    _anchor: Tensor

    def __init__(
        self, slot_id: str, channels: int, env_id: int | None, config: SlotConfig | None = None
    ) -> None:
        super().__init__()
        self.slot_id = slot_id
        self.channels = channels
        self.env_id = env_id
        self.config = config or SlotConfig()
        self.register_module("seed", None)
        # Follows the host's device and dtype so a new seed is built where the host lives.
        self.register_buffer("_anchor", torch.empty(0), persistent=False)
        self._state = SeedState()
        self._epoch: int | None = None
        self._disabled = False
        # How this slot's seeds ended, by blueprint: ("conv_heavy", FOSSILIZED) -> 1.
        self.outcomes: Counter[tuple[str, SeedStage]] = Counter()

    @property
    def state(self) -> SeedState:
        """A copy of the seed's state; changing it does not change the slot."""
        return replace(self._state)

    @property
    def stage(self) -> SeedStage:
        return self._state.stage

    @property
    def seed_id(self) -> str | None:
        return self._state.seed_id

    @property
    def alpha(self) -> float:
        return self._state.alpha

    @property
    def is_active(self) -> bool:
        """Whether a live, not yet permanent seed occupies the slot (it may be culled)."""
        return can_transition(self._state.stage, SeedStage.CULLED)

    @property
    def contributes(self) -> bool:
        """Whether the seed's output reaches the host's logits, so a counterfactual (val
        accuracy with the seed disabled) is worth measuring."""
        return self.seed is not None and self._state.stage in CONTRIBUTING_STAGES

    @property
    def contribution(self) -> float:
        """What the seed adds to the host's validation accuracy (pp), as last measured; 0
        while its output does not reach the host (before blending, once culled)."""
        return self._state.counterfactual if self.contributes else 0.0

    @property
    def measures_counterfactual(self) -> bool:
        """Whether the lifecycle still needs the seed's measured contribution: while it
        blends and is judged, not once it is permanent."""
        return self.contributes and self._state.stage != SeedStage.FOSSILIZED

    @contextmanager
    def disabled(self) -> Iterator[None]:
        """Run the host as if the slot were empty, to measure the counterfactual."""
        previous, self._disabled = self._disabled, True
        try:
            yield
        finally:
            self._disabled = previous

    @property
    def blends(self) -> bool:
        """Whether the seed's output is mixed into the host's forward pass now."""
        return not self._disabled and self.seed is not None and self.contributes

    def forward(self, h: Tensor) -> Tensor:
        """The slot's output for the host: h, or h + alpha * seed(h) once the seed blends."""
        if not self.blends:
            return h
        assert self.seed is not None
        return self.blend(h, self.seed(h))

    def blend(self, h: Tensor, contribution: Tensor) -> Tensor:
        """The host's activations with the seed's output `contribution` mixed in."""
        return h + self._state.alpha * contribution

    def isolated_input(self, h: Tensor) -> Tensor | None:
        """What the seed trains on while TRAINING: the activations detached, so that its
        loss can reach the seed's parameters but nothing upstream in the host; None when
        the seed is not TRAINING (or the slot is disabled)."""
        if self._disabled or self.seed is None or self._state.stage != SeedStage.TRAINING:
            return None
        return h.detach()

    def isolated(self, h: Tensor) -> Tensor | None:
        """The seed's own path while TRAINING (z + seed(z) on the detached activations)."""
        z = self.isolated_input(h)
        if z is None:
            return None
        assert self.seed is not None
        contribution: Tensor = self.seed(z)
        return z + contribution

    def germinate(self, blueprint_id: str, seed_id: str) -> bool:
        """Grow a seed in an empty (DORMANT) slot and start training it; False otherwise.

        Raises ValueError for an unknown blueprint.
        """
        if not can_transition(self._state.stage, SeedStage.GERMINATED):
            return False
        seed = build_seed(blueprint_id, self.channels)
        self.seed = seed.to(device=self._anchor.device, dtype=self._anchor.dtype)
        self.seed.train(self.training)
        params = count_params(seed)
        self._state = SeedState(
            stage=SeedStage.GERMINATED,
            seed_id=seed_id,
            blueprint_id=blueprint_id,
            params=params,
            latest_accuracy=self._state.latest_accuracy,
            accuracy_at_germination=self._state.latest_accuracy,
        )
        self._emit(
            EventType.SEED_GERMINATED,
            f"Seed {seed_id} germinated ({blueprint_id}, {params} params)",
            {"blueprint_id": blueprint_id, "seed_id": seed_id, "params": params},
        )
        self._transition(SeedStage.TRAINING)
        return True

    def begin_epoch(self, epoch: int) -> None:
        """Note the host epoch now running, so events raised during it (a controller's
        cull, a governor rollback) carry it."""
        self._epoch = epoch

    def step_epoch(
        self,
        val_accuracy: float,
        counterfactual_accuracy: float | None = None,
        epoch: int | None = None,
    ) -> None:
        """Account for one finished epoch and make the automatic transitions it earns.

        `counterfactual_accuracy` is the val accuracy with the seed disabled, measured by
        the trainer while `contributes` is true; `epoch` is the host epoch, put on events.
        """
        if epoch is not None:
            self._epoch = epoch
        state = self._state
        state.latest_accuracy = val_accuracy
        if state.stage in (SeedStage.DORMANT, SeedStage.FOSSILIZED):
            return
        state.epochs_in_stage += 1
        if self.seed is not None:
            state.epochs_total += 1
            if counterfactual_accuracy is not None:
                state.last_counterfactual = val_accuracy - counterfactual_accuracy
        self._advance()

    def fossilize(self) -> bool:
        """Make a PROBATIONARY seed permanent if its counterfactual contribution reaches
        the configured minimum; otherwise change nothing and return False."""
        state = self._state
        if not can_transition(state.stage, SeedStage.FOSSILIZED):
            return False
        measured = state.last_counterfactual
        if measured is None or measured < self.config.min_fossilize_improvement:
            return False
        epochs_in_stage = state.epochs_in_stage
        self._transition(SeedStage.FOSSILIZED)
        self._emit(
            EventType.SEED_FOSSILIZED,
            f"Seed {state.seed_id} fossilized",
            {
                "blueprint_id": state.blueprint_id,
                "seed_id": state.seed_id,
                "improvement": state.improvement,
                "blending_delta": state.blending_delta,
                "counterfactual": state.counterfactual,
                "params_added": state.params,
                "epochs_total": state.epochs_total,
                "epochs_in_stage": epochs_in_stage,
            },
        )
        return True

    def cull(self, reason: str) -> bool:
        """Remove a live seed from the host and start the embargo; False if none is live."""
        state = self._state
        if not can_transition(state.stage, SeedStage.CULLED):
            return False
        epochs_in_stage = state.epochs_in_stage
        self._transition(SeedStage.CULLED)
        self.seed = None
        state.alpha = 0.0
        self._emit(
            EventType.SEED_CULLED,
            f"Seed {state.seed_id} culled ({reason})",
            {
                "reason": reason,
                "blueprint_id": state.blueprint_id,
                "seed_id": state.seed_id,
                "improvement": state.improvement,
                "blending_delta": state.blending_delta,
                "counterfactual": state.counterfactual,
                "epochs_total": state.epochs_total,
                "epochs_in_stage": epochs_in_stage,
            },
        )
        return True

    def _advance(self) -> None:
        """The automatic transition, if any, that the epoch just counted has earned."""
        state, config = self._state, self.config
        done = state.epochs_in_stage
        if state.stage == SeedStage.TRAINING and done >= config.training_epochs:
            state.accuracy_at_blending_start = state.latest_accuracy
            self._transition(SeedStage.BLENDING)
            state.alpha = 1.0 / config.blending_epochs
        elif state.stage == SeedStage.BLENDING:
            state.alpha = min(1.0, (done + 1) / config.blending_epochs)
            if done >= config.blending_epochs:
                self._transition(SeedStage.SHADOWING)
        elif state.stage == SeedStage.SHADOWING and done >= config.shadowing_epochs:
            self._transition(SeedStage.PROBATIONARY)
        elif state.stage == SeedStage.PROBATIONARY and done >= config.probation_max_epochs:
            self.cull("probation_timeout")
        elif state.stage == SeedStage.CULLED:
            self._transition(SeedStage.EMBARGOED)
        elif state.stage == SeedStage.EMBARGOED and done >= config.embargo_epochs:
            self._transition(SeedStage.DORMANT)
            self._state = SeedState(latest_accuracy=state.latest_accuracy)

    def _transition(self, target: SeedStage) -> None:
        state = self._state
        source = state.stage
        if not can_transition(source, target):
            raise InvalidTransitionError(f"seed stage {source.name} cannot become {target.name}")
        state.stage = target
        state.epochs_in_stage = 0
        if target in OUTCOMES and state.blueprint_id is not None:
            self.outcomes[state.blueprint_id, target] += 1
        self._emit(
            EventType.SEED_STAGE_CHANGED,
            f"Seed {state.seed_id}: {source.name} -> {target.name}",
            {"from": source.name, "to": target.name},
        )

    def _emit(self, event_type: EventType, message: str, data: dict[str, Any]) -> None:
        telemetry.emit(
            TelemetryEvent(
                event_type=event_type,
                message=message,
                data={**data, "env_id": self.env_id},
                seed_id=self._state.seed_id,
                slot_id=self.slot_id,
                epoch=self._epoch,
            )
        )
