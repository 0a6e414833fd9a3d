"""The weights of several modules of one architecture as one flat parameter.

Laid out parameter by parameter with the modules as the leading dimension, so that each
tensor is a view of shape (N, *shape) and reshapes to a grouped or batched form without a
copy; one optimizer step updates every module. Each module keeps working on its own: its
parameters are rebound to views of its rows, so reading it, saving its state dict or
loading one into it sees the storage that the stacked computation trains.
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


class ParameterStack(nn.Module):
    """`flat` holds the parameters of `modules` (same names and shapes); `env_of` says,
    for every position in `flat`, which module it belongs to."""

    env_of: Tensor

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        if not modules:
            raise ValueError("stacking needs at least one module")
        self.count = len(modules)
        self._slices = [_Slice(n, p.shape, p.numel()) for n, p in modules[0].named_parameters()]
        named = [dict(module.named_parameters()) for module in modules]
        if any([(n, p.shape) for n, p in m.items()] != self._layout() for m in named):
            raise ValueError("stacked modules must have the same parameters")
        blocks = [torch.stack([m[s.name].detach() for m in named]) for s in self._slices]
        self.flat = nn.Parameter(torch.cat([block.reshape(-1) for block in blocks]))
        envs = torch.arange(self.count, device=self.flat.device)
        index = torch.cat([envs.repeat_interleave(s.numel) for s in self._slices])
        self.register_buffer("env_of", index, persistent=False)
        self._rebind(modules)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self._slices]

    def weights(self, flat: Tensor | None = None) -> dict[str, Tensor]:
        """Each parameter as (N, *shape), a view of `flat` (by default the stack's own).
        One split rather than a slice per parameter: its backward is one concatenation,
        not a zero-filled gradient of the whole of `flat` per parameter."""
        source = self.flat if flat is None else flat
        blocks = torch.split(source, [self.count * s.numel for s in self._slices])
        return {
            s.name: block.view(self.count, *s.shape)
            for s, block in zip(self._slices, blocks, strict=True)
        }

    def _layout(self) -> list[tuple[str, torch.Size]]:
        return [(s.name, s.shape) for s in self._slices]

    def _rebind(self, modules: Sequence[nn.Module]) -> None:
        """Point each module's parameters at its rows of `flat` (shared storage)."""
        storage = self.weights(self.flat.detach())
        for index, module in enumerate(modules):
            for s in self._slices:
                owner_name, _, attribute = s.name.rpartition(".")
                owner = module.get_submodule(owner_name)
                setattr(owner, attribute, nn.Parameter(storage[s.name][index]))
