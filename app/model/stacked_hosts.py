"""N hosts of one architecture stepped as one block-diagonal network.

A host step is dispatch-bound: a few hundred parameters in a dozen tensors, so every
operator costs its fixed overhead however small the tensors. Stacking the environments'
hosts turns N small convolutions into one grouped convolution (`groups=N`), N GroupNorms
into one with N times the groups and N linear heads into one batched matrix product, so a
lockstep step costs about what one host's step costs.

All host weights live in one flat parameter, laid out parameter by parameter with the
environments as the leading dimension, so each tensor reshapes to its grouped form as a
view and one optimizer step updates every environment. Each environment's `HostCNN` keeps
working on its own: its host parameters are rebound to views of its rows, so evaluation,
the governor's snapshots and rollbacks, and any code that reads the host see the same
storage the batched step trains.

Seeds stay per environment (their blueprints and stages differ): the batched forward stops
at the seed slot, each environment's slot runs on its slice (blending, the isolated
TRAINING path through a head with detached weights), and the batched head continues.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional

from app.model.host import HostCNN

# The grouped layout runs channels-last: on small feature maps oneDNN's grouped
# convolution and max pooling are several times faster so, while GroupNorm's CPU kernel
# is faster on contiguous NCHW and gets a copy in that layout (benchmarks/loop_throughput.py
# measures the loop; an epoch of four digits hosts took about 30% less than all NCHW).
# Modules applied to the grouped layout as they are: they act on each channel alone.
_CHANNELWISE = (nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d)


@dataclass(frozen=True)
class StackedOutput:
    """`logits`: (N, B, classes), each env's host with its seed blended in as its stage
    allows. `seed_logits`: per env, the isolated seed path's prediction while its seed is
    TRAINING, else None."""

    logits: Tensor
    seed_logits: list[Tensor | None]


@dataclass(frozen=True)
class _Slice:
    name: str
    shape: torch.Size
    numel: int


class StackedHosts(nn.Module):
    """The host weights of `hosts` (same architecture, no seeds yet) as one parameter,
    and their forward pass as one computation over inputs in grouped layout
    (B, N * channels, H, W): environment i's channels are the i-th group."""

    env_of: Tensor

    def __init__(self, hosts: Sequence[HostCNN]) -> None:
        super().__init__()
        if not hosts:
            raise ValueError("stacking needs at least one host")
        if any(host.seed_parameters() for host in hosts):
            raise ValueError("hosts are stacked before any seed is grown")
        self.hosts = list(hosts)
        self.envs = len(hosts)
        template = hosts[0]
        self._slices: list[_Slice] = []
        for name, param in template.named_parameters():
            self._slices.append(_Slice(name, param.shape, param.numel()))
        blocks = [
            torch.stack([dict(host.named_parameters())[s.name].detach() for host in hosts])
            for s in self._slices
        ]
        self.flat = nn.Parameter(torch.cat([block.reshape(-1) for block in blocks]))
        self.register_buffer("env_of", self._env_index(), persistent=False)
        self._rebind_hosts()

    @property
    def names(self) -> list[str]:
        """The host parameters' names, as in each `HostCNN`'s `named_parameters`."""
        return [s.name for s in self._slices]

    def forward(self, x: Tensor, seed_paths: bool = True) -> StackedOutput:
        """`x`: (B, N * in_channels, H, W), environment i's images in group i.
        `seed_paths`: also run the isolated paths of TRAINING seeds (training needs them,
        evaluation does not)."""
        weights = self._weights(self.flat)
        x = x.contiguous(memory_format=torch.channels_last)
        batch = x.shape[0]
        template = self.hosts[0]
        h = self._grouped(
            template.block2,
            self._grouped(template.block1, x, weights, "block1."),
            weights,
            "block2.",
        )
        channels = h.shape[1] // self.envs
        # A seed gets its environment's slice as a contiguous tensor: a channels-last
        # slice crashes GroupNorm's CPU backward (the `norm` blueprint) in torch 2.13.
        parts = [
            part if host.slot.seed is None else part.contiguous()
            for host, part in zip(
                self.hosts, h.view(batch, self.envs, channels, *h.shape[2:]).unbind(1), strict=True
            )
        ]
        mixed = [host.slot(part) for host, part in zip(self.hosts, parts, strict=True)]
        if any(out is not part for out, part in zip(mixed, parts, strict=True)):
            h = torch.stack(mixed, dim=1).flatten(1, 2)
        logits = self._grouped(template.head, h, weights, "head.")
        seed_logits: list[Tensor | None] = [None] * self.envs
        isolated = [
            host.slot.isolated(part) if seed_paths else None
            for host, part in zip(self.hosts, parts, strict=True)
        ]
        if any(z is not None for z in isolated):
            # Every environment through the head at once; rows without a TRAINING seed
            # carry the host's own (detached) activations and are not used.
            z = torch.stack(
                [p.detach() if z is None else z for z, p in zip(isolated, parts, strict=True)],
                dim=1,
            ).flatten(1, 2)
            frozen = self._frozen_head(z, weights)
            for index, path in enumerate(isolated):
                if path is not None:
                    seed_logits[index] = frozen[index]
        return StackedOutput(logits, seed_logits)

    def grouped_input(self, x: Tensor) -> Tensor:
        """The same images (B, C, H, W) for every environment, in grouped layout."""
        return x.repeat(1, self.envs, 1, 1)

    @torch.no_grad()
    def grad_norms(self) -> Tensor | None:
        """Each environment's host gradient norm, (N,), or None before any backward."""
        grad = self.flat.grad
        if grad is None:
            return None
        squares = torch.zeros(self.envs, device=grad.device, dtype=grad.dtype)
        return squares.index_add_(0, self.env_of, grad.square()).sqrt()

    def leaked(self, env: int, loss: Tensor) -> tuple[Tensor, list[str]] | None:
        """Per-parameter norms of the gradient `loss` puts into environment `env`'s host
        weights, and the parameters' names; None when `loss` cannot reach them."""
        (grad,) = torch.autograd.grad(loss, [self.flat], allow_unused=True, retain_graph=True)
        if grad is None:
            return None
        rows = self._weights(grad.detach())
        norms = torch.stack([torch.linalg.vector_norm(rows[s.name][env]) for s in self._slices])
        return norms, self.names

    def _frozen_head(self, z: Tensor, weights: dict[str, Tensor]) -> Tensor:
        """The heads with detached weights, (N, B, classes): the seed paths' losses can
        never put gradient into a host, however backward is called."""
        head = {name: w.detach() for name, w in weights.items() if name.startswith("head.")}
        return self._grouped(self.hosts[0].head, z, head, "head.")

    def _weights(self, flat: Tensor) -> dict[str, Tensor]:
        """Each parameter as (N, *shape), a view of `flat`. One split rather than a slice
        per parameter: its backward is one concatenation, not a zero-filled gradient of
        the whole of `flat` per parameter."""
        blocks = torch.split(flat, [self.envs * s.numel for s in self._slices])
        return {
            s.name: block.view(self.envs, *s.shape)
            for s, block in zip(self._slices, blocks, strict=True)
        }

    def _grouped(
        self, block: nn.Sequential, z: Tensor, weights: dict[str, Tensor], prefix: str
    ) -> Tensor:
        """`block` applied to every environment's group at once."""
        n = self.envs
        for index, module in enumerate(block):
            name = f"{prefix}{index}."
            if isinstance(module, nn.Conv2d):
                weight = weights[name + "weight"].flatten(0, 1)
                bias = weights[name + "bias"].flatten() if module.bias is not None else None
                z = functional.conv2d(
                    z,
                    weight,
                    bias,
                    module.stride,
                    module.padding,
                    module.dilation,
                    module.groups * n,
                )
            elif isinstance(module, nn.GroupNorm):
                z = functional.group_norm(
                    z.contiguous(),
                    module.num_groups * n,
                    weights[name + "weight"].flatten(),
                    weights[name + "bias"].flatten(),
                    module.eps,
                ).contiguous(memory_format=torch.channels_last)
            elif isinstance(module, nn.Flatten):
                z = z.flatten(1)
            elif isinstance(module, nn.Linear):
                per_env = z.view(z.shape[0], n, -1).transpose(0, 1)
                weight = weights[name + "weight"].transpose(1, 2)
                if module.bias is None:
                    z = torch.bmm(per_env, weight)
                else:
                    z = torch.baddbmm(weights[name + "bias"].unsqueeze(1), per_env, weight)
            elif isinstance(module, _CHANNELWISE):
                z = module(z)
            else:
                raise TypeError(f"cannot stack a {type(module).__name__} ({name[:-1]})")
        return z

    def _env_index(self) -> Tensor:
        """For every position in `flat`, the environment it belongs to."""
        envs = torch.arange(self.envs, device=self.flat.device)
        return torch.cat([envs.repeat_interleave(s.numel) for s in self._slices])

    def _rebind_hosts(self) -> None:
        """Point each host's parameters at its rows of `flat` (shared storage)."""
        storage = self._weights(self.flat.detach())
        for env, host in enumerate(self.hosts):
            for s in self._slices:
                module_name, _, attribute = s.name.rpartition(".")
                module = host.get_submodule(module_name)
                setattr(module, attribute, nn.Parameter(storage[s.name][env]))
