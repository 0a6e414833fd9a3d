"""N hosts of one architecture stepped as one block-diagonal network.

A host step is dispatch-bound: a few hundred parameters in a dozen tensors, so every
operator costs its fixed overhead however small the tensors. Stacking the environments'
hosts turns N small convolutions into one grouped convolution (`groups=N`), N GroupNorms
into one with N times the groups and N linear heads into one batched matrix product, so a
lockstep step costs a fraction of N separate steps (benchmarks/loop_throughput.py).

All host weights live in one flat parameter (`ParameterStack`), so each tensor reshapes
to its grouped form as a view and one optimizer step updates every environment; each
environment's `HostCNN` keeps working on its own, on views of its rows (evaluation, the
governor's snapshots and rollbacks).

Seeds differ per environment: the batched forward stops at the seed slot, the seeds run
stacked by blueprint (`StackedSeeds`) on their environments' slices, and the batched head
continues; the TRAINING seeds' isolated paths go through the heads with detached weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from app.model.grouped import apply_grouped, linear_per_copy
from app.model.host import HostCNN
from app.model.parameter_stack import ParameterStack
from app.model.stacked_seeds import StackedSeeds


@dataclass(frozen=True)
class StackedOutput:
    """`logits`: (N, B, classes), each env's host with its seed blended in as its stage
    allows. `seed_logits`: (len(seed_envs), B, classes), the isolated seed paths'
    predictions of the environments `seed_envs`, whose seeds are TRAINING; None when no
    seed is."""

    logits: Tensor
    seed_logits: Tensor | None = None
    seed_envs: tuple[int, ...] = ()


class StackedHosts(nn.Module):
    """The host weights of `hosts` (same architecture, no seeds yet) as one parameter,
    and their forward pass as one computation over inputs in grouped layout
    (B, N * channels, H, W): environment i's channels are the i-th group."""

    def __init__(self, hosts: Sequence[HostCNN]) -> None:
        super().__init__()
        if not hosts:
            raise ValueError("stacking needs at least one host")
        if any(host.seed_parameters() for host in hosts):
            raise ValueError("hosts are stacked before any seed is grown")
        self.hosts = list(hosts)
        self.envs = len(hosts)
        self.stack = ParameterStack(hosts)

    def seeds(self) -> StackedSeeds:
        """The hosts' current seeds, stacked for a training pass."""
        return StackedSeeds([host.slot for host in self.hosts])

    def forward(self, x: Tensor, seeds: StackedSeeds) -> StackedOutput:
        """A training step's forward: `x` (B, N * in_channels, H, W) holds environment
        i's images in group i; `seeds` are the hosts' seeds (`seeds()`, unchanged since)."""
        (weights,) = self.stack.weights()
        template = self.hosts[0]
        h = apply_grouped(template.block1, x, weights, self.envs, "block1.")
        h = apply_grouped(template.block2, h, weights, self.envs, "block2.")
        parts = h.view(h.shape[0], self.envs, -1, *h.shape[2:]).unbind(1)
        slots = seeds(parts)
        if any(out is not part for out, part in zip(slots.mixed, parts, strict=True)):
            h = torch.stack(slots.mixed, dim=1).flatten(1, 2)
        logits = self._head(h, weights)
        seed_envs = tuple(i for i, z in enumerate(slots.isolated) if z is not None)
        if not seed_envs:
            return StackedOutput(logits)
        # Every environment through the head at once; rows without a TRAINING seed carry
        # the host's own (detached) activations and are dropped.
        z = torch.stack(
            [p.detach() if z is None else z for z, p in zip(slots.isolated, parts, strict=True)],
            dim=1,
        ).flatten(1, 2)
        frozen = self._frozen_head(z, weights)
        if len(seed_envs) < self.envs:
            # Rows picked one by one: an index list would be copied to the device each step.
            frozen = torch.stack([frozen[i] for i in seed_envs])
        return StackedOutput(logits, frozen, seed_envs)

    @torch.no_grad()
    def grad_norms(self) -> Tensor | None:
        """Each environment's host gradient norm, (N,), or None before any backward."""
        grad = self.stack.flat.grad
        if grad is None:
            return None
        squares = torch.zeros(self.envs, device=grad.device, dtype=grad.dtype)
        return squares.index_add_(0, self.stack.env_of, grad.square()).sqrt()

    def leaked(self, env: int, loss: Tensor) -> tuple[Tensor, list[str]] | None:
        """Per-parameter norms of the gradient `loss` puts into environment `env`'s host
        weights, and the parameters' names; None when `loss` cannot reach them."""
        (grad,) = torch.autograd.grad(loss, [self.stack.flat], allow_unused=True, retain_graph=True)
        if grad is None:
            return None
        (rows,) = self.stack.weights(grad.detach())
        names = self.stack.names()
        norms = torch.stack([torch.linalg.vector_norm(rows[name][env]) for name in names])
        return norms, names

    def _head(self, h: Tensor, weights: dict[str, Tensor]) -> Tensor:
        """The heads on grouped activations: logits (N, B, classes)."""
        head = self.hosts[0].head
        z = apply_grouped(head[:-1], h, weights, self.envs, "head.")
        last = head[-1]
        if not isinstance(last, nn.Linear):
            raise TypeError(f"a host head ends in a Linear layer, not {type(last).__name__}")
        return linear_per_copy(last, z, weights, self.envs, f"head.{len(head) - 1}.")

    def _frozen_head(self, z: Tensor, weights: dict[str, Tensor]) -> Tensor:
        """The heads with detached weights, (N, B, classes): the seed paths' losses can
        never put gradient into a host, however backward is called."""
        head = {name: w.detach() for name, w in weights.items() if name.startswith("head.")}
        return self._head(z, head)
