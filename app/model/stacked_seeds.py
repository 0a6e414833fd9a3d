"""The live seeds of a batch, stacked by blueprint, for one training pass.

Seeds differ per environment (blueprint, stage, present or not), so they cannot share the
hosts' block-diagonal network; but the seeds of one blueprint share an architecture. At
the start of a pass the seeds are grouped by blueprint, and all their weights become one
parameter with a group per blueprint (`ParameterStack`), so that one optimizer step trains
every seed; a step runs each group once in grouped layout (`apply_grouped`: one grouped
convolution for all members), not once per environment. Seeds only change between epochs
(the controller acts, the lifecycle advances), so the groups hold for the whole pass.

What each environment's slot does with its seed's output is still the slot's: a
contributing seed is blended into the host's activations with its alpha, a TRAINING seed
learns on detached activations (`SeedSlot.isolated_input`), a disabled slot runs none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from app.model.grouped import apply_grouped
from app.model.parameter_stack import ParameterStack
from app.model.slot import SeedSlot


@dataclass(frozen=True)
class SeedOutputs:
    """Per environment: the slot's output for the host (its activations, blended with a
    contributing seed), and a TRAINING seed's isolated path (None otherwise)."""

    mixed: list[Tensor]
    isolated: list[Tensor | None]


class _Group:
    """The seeds of one blueprint: `members` are environment indices."""

    def __init__(self, members: list[int], template: nn.Module) -> None:
        self.members = members
        self.template = template

    def run(self, inputs: list[Tensor | None], weights: dict[str, Tensor]) -> list[Tensor | None]:
        """Each member's seed on its input (None: the member's seed does not run), with
        the group's stacked `weights`."""
        active = [k for k, x in enumerate(inputs) if x is not None]
        outputs: list[Tensor | None] = [None] * len(inputs)
        if not active:
            return outputs
        if len(active) < len(inputs):
            rows = torch.tensor(active, device=next(iter(weights.values())).device)
            weights = {name: w.index_select(0, rows) for name, w in weights.items()}
        x = torch.stack([inputs[k] for k in active], dim=1)  # type: ignore[misc]
        y = apply_grouped(self.template, x.flatten(1, 2), weights, len(active))
        for k, out in zip(active, y.view(x.shape).unbind(1), strict=True):
            outputs[k] = out
        return outputs


class StackedSeeds:
    """The seeds in `slots` (one slot per environment), grouped by blueprint. `stack`
    holds their weights (None without seeds); its rows are the environments `envs`."""

    def __init__(self, slots: Sequence[SeedSlot]) -> None:
        self.slots = list(slots)
        by_blueprint: dict[str, list[int]] = {}
        for index, slot in enumerate(slots):
            blueprint = slot.state.blueprint_id
            if slot.seed is not None and blueprint is not None:
                by_blueprint.setdefault(blueprint, []).append(index)
        members = list(by_blueprint.values())
        self.groups = [_Group(envs, self._seed(envs[0])) for envs in members]
        self.envs = [env for envs in members for env in envs]
        self.stack = (
            ParameterStack(*[[self._seed(env) for env in envs] for envs in members])
            if members
            else None
        )

    def __call__(self, parts: Sequence[Tensor]) -> SeedOutputs:
        """The slots applied to each environment's activations `parts`, and the TRAINING
        seeds' isolated paths."""
        mixed = list(parts)
        isolated: list[Tensor | None] = [None] * len(parts)
        if self.stack is None:
            return SeedOutputs(mixed, isolated)
        for group, weights in zip(self.groups, self.stack.weights(), strict=True):
            inputs = [self._input(i, parts[i]) for i in group.members]
            outputs = group.run(inputs, weights)
            for env, x, y in zip(group.members, inputs, outputs, strict=True):
                if x is None or y is None:
                    continue
                slot = self.slots[env]
                if slot.blends:
                    mixed[env] = slot.blend(parts[env], y)
                else:
                    isolated[env] = x + y
        return SeedOutputs(mixed, isolated)

    def _input(self, env: int, h: Tensor) -> Tensor | None:
        slot = self.slots[env]
        return h if slot.blends else slot.isolated_input(h)

    def _seed(self, env: int) -> nn.Module:
        seed = self.slots[env].seed
        assert seed is not None
        return seed
