"""The weights of several modules as one flat parameter, in groups of one architecture.

Laid out group by group, and within a group parameter by parameter with the modules as the
leading dimension, so that each tensor is a view of shape (N, *shape) and reshapes to a
grouped or batched form without a copy; one optimizer step updates every module of every
group (the stacked hosts are one group, the seeds of a pass one group per blueprint). Each
module keeps working on its own: its parameters are rebound to views of its rows, so
reading it, saving its state dict or loading one into it sees the storage that the stacked
computation trains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class _Slice:
    name: str
    shape: torch.Size
    numel: int


class _Group:
    """One architecture's modules: their parameter layout and where their rows start."""

    def __init__(self, modules: Sequence[nn.Module], first_row: int) -> None:
        if not modules:
            raise ValueError("stacking needs at least one module in every group")
        self.count = len(modules)
        self.first_row = first_row
        self.slices = [_Slice(n, p.shape, p.numel()) for n, p in modules[0].named_parameters()]
        layout = [(s.name, s.shape) for s in self.slices]
        if any([(n, p.shape) for n, p in m.named_parameters()] != layout for m in modules):
            raise ValueError("stacked modules must have the same parameters")

    def blocks(self, modules: Sequence[nn.Module]) -> list[Tensor]:
        named = [dict(module.named_parameters()) for module in modules]
        return [torch.stack([m[s.name].detach() for m in named]).reshape(-1) for s in self.slices]

    def rows(self, device: torch.device) -> Tensor:
        rows = torch.arange(self.first_row, self.first_row + self.count, device=device)
        return torch.cat([rows.repeat_interleave(s.numel) for s in self.slices])


class ParameterStack(nn.Module):
    """`flat` holds the parameters of each group of `groups` (within a group, the same
    names and shapes); the modules are the stack's rows, numbered through the groups in
    order, and `env_of` says for every position of `flat` which row it belongs to."""

    env_of: Tensor

    def __init__(self, *groups: Sequence[nn.Module]) -> None:
        super().__init__()
        if not groups:
            raise ValueError("stacking needs at least one group of modules")
        self._groups: list[_Group] = []
        for modules in groups:
            self._groups.append(_Group(modules, sum(g.count for g in self._groups)))
        self.count = sum(group.count for group in self._groups)
        blocks = [b for g, mods in zip(self._groups, groups, strict=True) for b in g.blocks(mods)]
        self.flat = nn.Parameter(torch.cat(blocks))
        index = torch.cat([group.rows(self.flat.device) for group in self._groups])
        self.register_buffer("env_of", index, persistent=False)
        for group_weights, modules in zip(self.weights(self.flat.detach()), groups, strict=True):
            _rebind(modules, group_weights)

    def names(self, group: int = 0) -> list[str]:
        return [s.name for s in self._groups[group].slices]

    def weights(self, flat: Tensor | None = None) -> list[dict[str, Tensor]]:
        """Per group, each parameter as (N, *shape), a view of `flat` (by default the
        stack's own). One split rather than a slice per parameter: its backward is one
        concatenation, not a zero-filled gradient of the whole of `flat` per parameter."""
        source = self.flat if flat is None else flat
        slices = [(g.count, s) for g in self._groups for s in g.slices]
        blocks = iter(torch.split(source, [count * s.numel for count, s in slices]))
        return [
            {s.name: next(blocks).view(g.count, *s.shape) for s in g.slices} for g in self._groups
        ]


def _rebind(modules: Sequence[nn.Module], weights: dict[str, Tensor]) -> None:
    """Point each module's parameters at its rows of the stack (shared storage)."""
    for index, module in enumerate(modules):
        for name, stacked in weights.items():
            owner_name, _, attribute = name.rpartition(".")
            owner = module.get_submodule(owner_name)
            setattr(owner, attribute, nn.Parameter(stacked[index]))
