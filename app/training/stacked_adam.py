"""Adam over stacked hosts, with a step count and a learning rate per environment.

`torch.optim.Adam` keeps one step count and one learning rate per tensor. The stacked
hosts share their tensors across environments, yet a governor rollback rewinds one
environment's optimizer (moments, step count and the learning rate its schedule had
reached) and leaves the others where they are. This optimizer does Adam's update (the same
arithmetic as `torch.optim.Adam`, checked by a test) on the whole flat parameter in a
handful of operations, with per-environment bias corrections and learning rates. While
every environment is at the same step and rate, which is always the case until a
rollback, those are plain numbers and the step needs no per-environment tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from app.model.parameter_stack import ParameterStack


@dataclass
class _Mirror:
    """Per-environment step counts and rates on the device, and their host values."""

    steps_t: Tensor
    lrs_t: Tensor
    steps: list[int]
    lrs: list[float]

    @classmethod
    def of(cls, steps: list[int], lrs: list[float], like: Tensor) -> _Mirror:
        values = torch.tensor([steps, lrs], dtype=like.dtype).to(like.device)
        return cls(values[0], values[1], list(steps), list(lrs))

    def follows(self, steps: list[int], lrs: list[float]) -> bool:
        """Whether `steps` and `lrs` are these after one more step."""
        return lrs == self.lrs and steps == [step + 1 for step in self.steps]

    def advance(self) -> None:
        self.steps_t.add_(1)
        self.steps = [step + 1 for step in self.steps]


class StackedAdam:
    """Adam on a `ParameterStack`'s flat parameter, one share per stacked module."""

    def __init__(
        self,
        stack: ParameterStack,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.param = stack.flat
        self.env_of = stack.env_of
        self.betas = betas
        self.eps = eps
        self.steps = [0] * stack.count
        self.lrs = [lr] * stack.count
        self.exp_avg = torch.zeros_like(stack.flat, memory_format=torch.preserve_format)
        self.exp_avg_sq = torch.zeros_like(stack.flat, memory_format=torch.preserve_format)
        self._mirror: _Mirror | None = None

    def zero_grad(self) -> None:
        self.param.grad = None

    def decay_lr(self, gamma: float) -> None:
        """One step of an exponential schedule, as `ExponentialLR.step` takes it."""
        self.lrs = [lr * gamma for lr in self.lrs]

    @torch.no_grad()
    def step(self) -> None:
        grad = self.param.grad
        if grad is None:
            return
        beta1, beta2 = self.betas
        self.steps = [step + 1 for step in self.steps]
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if len(set(self.steps)) == 1 and len(set(self.lrs)) == 1:
            self._mirror = None
            step, lr = self.steps[0], self.lrs[0]
            denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(self.eps)
            self.param.addcdiv_(self.exp_avg, denom, value=-lr / (1 - beta1**step))
            return
        step_size, root = self._per_position_factors()
        denom = (self.exp_avg_sq.sqrt() / root).add_(self.eps)
        self.param.addcdiv_(self.exp_avg * step_size, denom, value=-1)

    def _per_position_factors(self) -> tuple[Tensor, Tensor]:
        """Adam's step size and bias-correction root for every position of `param`.

        The step counts and rates are mirrored on the device, so that a step costs no
        transfer from the host (on CUDA, a copy from pageable memory waits for the
        device): copied when they changed other than by a step, advanced there otherwise.
        """
        beta1, beta2 = self.betas
        mirror = self._mirror
        if mirror is not None and mirror.follows(self.steps, self.lrs):
            mirror.advance()
        else:
            mirror = self._mirror = _Mirror.of(self.steps, self.lrs, self.param)
        step_size = mirror.lrs_t / (1 - beta1**mirror.steps_t)
        root = torch.sqrt(1 - beta2**mirror.steps_t)
        return step_size[self.env_of], root[self.env_of]

    def env(self, env: int) -> EnvAdamState:
        """Environment `env`'s share of the optimizer, for a snapshot and a rollback."""
        return EnvAdamState(self, env)


class EnvAdamState:
    """One environment's moments, step count and learning rate in a `StackedAdam`, read
    and restored with the `state_dict` / `load_state_dict` pair an optimizer has."""

    def __init__(self, optimizer: StackedAdam, env: int) -> None:
        self._optimizer = optimizer
        self._env = env
        self._rows = (optimizer.env_of == env).nonzero().flatten()

    @property
    def lr(self) -> float:
        return self._optimizer.lrs[self._env]

    @lr.setter
    def lr(self, value: float) -> None:
        self._optimizer.lrs[self._env] = value

    def state_dict(self) -> dict[str, Any]:
        optimizer, rows = self._optimizer, self._rows
        return {
            "step": optimizer.steps[self._env],
            "lr": optimizer.lrs[self._env],
            "exp_avg": optimizer.exp_avg[rows].clone(),
            "exp_avg_sq": optimizer.exp_avg_sq[rows].clone(),
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict`; an empty one leaves the environment fresh (no step
        taken yet, moments zero) at the optimizer's current rate."""
        optimizer, rows = self._optimizer, self._rows
        if not state:
            optimizer.steps[self._env] = 0
            optimizer.exp_avg.index_fill_(0, rows, 0.0)
            optimizer.exp_avg_sq.index_fill_(0, rows, 0.0)
            return
        optimizer.steps[self._env] = state["step"]
        optimizer.lrs[self._env] = state["lr"]
        optimizer.exp_avg.index_copy_(0, rows, state["exp_avg"])
        optimizer.exp_avg_sq.index_copy_(0, rows, state["exp_avg_sq"])


class SavedAdamState:
    """One environment's share of a `StackedAdam`, kept between the optimizers that hold
    it: a seed's stacked optimizer lives for one training pass (the seeds are regrouped
    every epoch), its moments, step count and rate for the seed's life. Empty: fresh."""

    def __init__(self) -> None:
        self._state: dict[str, Any] = {}

    def state_dict(self) -> dict[str, Any]:
        return dict(self._state)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._state = dict(state_dict)
