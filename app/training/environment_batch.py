"""The environments of a batch trained in lockstep as one stacked host (Tolaria's loop).

Every training step gathers each environment's next minibatch (each in its own data
order), runs the stacked hosts once (the live seeds stacked by blueprint), backpropagates
the sum of the environments' losses (their weights are disjoint, so each gets exactly its
own gradient) and takes one optimizer step for all hosts and one for all seeds.
Validation and the counterfactual are passes over the whole validation set, one host at
a time: large enough operators that stacking gains nothing (on the CPU the stacked pass
took longer than the four hosts' passes one after another), and that release the GIL for
long enough that environments validate in parallel on threads, one per core that the
intra-op threads leave free. Each environment then judges its own epoch (governor, seed
lifecycle, tracker, events) under its own telemetry scope.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from functools import partial

import torch
from torch import Tensor
from torch.nn.functional import cross_entropy

from app.contracts.seeds import SeedState
from app.model.stacked_hosts import StackedHosts
from app.model.stacked_seeds import StackedSeeds
from app.training.environment import (
    EpochMeasurements,
    EpochResult,
    HostEnvironment,
    Validation,
)
from app.training.stacked_adam import EnvAdamState, SavedAdamState, StackedAdam

# Enters environment i's telemetry scope (e.g. its epoch span), so that the events it
# raises land there.
Scope = Callable[[int], AbstractContextManager[object]]
_Probe = tuple[int, SeedState, tuple[Tensor, list[str]] | None]


def _no_scope(_: int) -> AbstractContextManager[object]:
    return nullcontext()


class EnvironmentBatch:
    """Trains `envs` (same dataset, host and device) together, one episode at a time."""

    hosts: StackedHosts
    optimizer: StackedAdam

    def __init__(self, envs: Sequence[HostEnvironment]) -> None:
        if not envs:
            raise ValueError("a batch needs at least one environment")
        self.envs = list(envs)
        self.dataset = envs[0].dataset
        self.host_config = envs[0].host_config
        self.device = envs[0].device
        self.reset()

    def reset(self) -> None:
        """A new episode in every environment: fresh hosts, stacked, and a fresh optimizer."""
        built = [env.build_host() for env in self.envs]
        self.hosts = StackedHosts(built)
        self.optimizer = StackedAdam(self.hosts.stack, self.host_config.lr)
        for index, (env, host) in enumerate(zip(self.envs, built, strict=True)):
            env.reset(host, self.optimizer.env(index), partial(self.hosts.leaked, index))

    def run_epoch(self, epoch: int, scope: Scope = _no_scope) -> list[EpochResult]:
        """Train, validate and judge one epoch in every environment; environment i's events
        are raised inside `scope(i)`."""
        started = time.perf_counter()
        for env in self.envs:
            env.begin_epoch(epoch)
        seeds = self.hosts.seeds()
        train_losses, train_accuracies = self._train_epoch(seeds, scope)
        self.optimizer.decay_lr(self.host_config.lr_decay)
        validations = self._validate()
        results = []
        for index, env in enumerate(self.envs):
            measured = EpochMeasurements(
                train_losses[index], train_accuracies[index], validations[index]
            )
            with scope(index):
                results.append(env.finish_epoch(epoch, started, measured))
        return results

    def _train_epoch(self, seeds: StackedSeeds, scope: Scope) -> tuple[list[float], list[float]]:
        data, envs = self.dataset, self.envs
        for env in envs:
            env.host.train()
        seed_optimizer, seed_shares = self._seed_optimizer(seeds)
        # Each order comes from its environment's CPU generator whatever the device, so a
        # seed gives the same data order everywhere; moved once, the data only indexed.
        count = len(data.train_y)
        orders = torch.stack([torch.randperm(count, generator=env.rng) for env in envs])
        total_loss = torch.zeros(len(envs), device=self.device)
        correct = torch.zeros(len(envs), device=self.device)
        for index in torch.split(orders.to(self.device), self.host_config.batch_size, dim=1):
            # (B, N, C, H, W) flattens to the grouped layout without a copy.
            x, y = data.train_x[index.t()].flatten(1, 2), data.train_y[index]
            output = self.hosts(x, seeds)
            losses = _mean_losses(output.logits, y)
            total = losses.sum()
            seed_losses: list[Tensor | None] = [None] * len(envs)
            if output.seed_logits is not None:
                seed_y = (
                    y
                    if len(output.seed_envs) == len(envs)
                    else torch.stack([y[env] for env in output.seed_envs])
                )
                per_seed = _mean_losses(output.seed_logits, seed_y)
                total = total + per_seed.sum()
                for env, seed_loss in zip(output.seed_envs, per_seed.unbind(), strict=True):
                    seed_losses[env] = seed_loss
            probes = self._probes(seed_losses)
            self.optimizer.zero_grad()
            if seed_optimizer is not None:
                seed_optimizer.zero_grad()
            torch.autograd.backward(total)
            if probes:
                self._check_steps(probes, scope)
            self.optimizer.step()
            if seed_optimizer is not None:
                seed_optimizer.step()
            total_loss += losses.detach() * y.shape[1]
            correct += (output.logits.argmax(2) == y).sum(1)
        for share, kept in seed_shares:
            kept.load_state_dict(share.state_dict())
        loss_sums, corrects = torch.stack([total_loss, correct]).tolist()
        return [s / count for s in loss_sums], [100.0 * c / count for c in corrects]

    def _seed_optimizer(
        self, seeds: StackedSeeds
    ) -> tuple[StackedAdam | None, list[tuple[EnvAdamState, SavedAdamState]]]:
        """The optimizer of every seed for this pass (None without seeds), each seed's
        share starting from its kept state; and each share with the state it goes back
        to."""
        if seeds.stack is None:
            return None, []
        optimizer = StackedAdam(seeds.stack, self.host_config.seed_lr)
        shares = []
        for row, env in enumerate(seeds.envs):
            kept = self.envs[env].seed_optimizer_state()
            assert kept is not None
            share = optimizer.env(row)
            share.load_state_dict(kept.state_dict())
            shares.append((share, kept))
        return optimizer, shares

    def _probes(self, seed_losses: list[Tensor | None]) -> list[_Probe]:
        """The environments whose step is sampled for the health checks, each with its
        isolation probe taken while the graph is alive; other steps do no extra work."""
        probes = []
        for index, env in enumerate(self.envs):
            if env.health.sampled():
                state = env.slot.state
                probes.append((index, state, env.health.isolation_probe(seed_losses[index], state)))
        return probes

    def _check_steps(self, probes: list[_Probe], scope: Scope) -> None:
        norms = self.hosts.grad_norms()
        for index, state, probe in probes:
            with scope(index):
                norm = None if norms is None else norms[index]
                self.envs[index].health.check_step(norm, probe, state)

    def _validate(self) -> list[Validation]:
        """Every environment's validation passes, on as many threads as there are cores
        for them (the results do not depend on it: each pass is one host's own)."""
        workers = validation_threads(self.device, len(self.envs))
        if workers == 1:
            return [env.validate() for env in self.envs]
        with ThreadPoolExecutor(workers, thread_name_prefix="esper-validation") as pool:
            return list(pool.map(HostEnvironment.validate, self.envs))


def validation_threads(device: torch.device, envs: int) -> int:
    """Threads for `envs` environments' validation passes: one per core left over by the
    intra-op threads, on the CPU; one on an accelerator, which runs them in turn anyway."""
    if device.type != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(envs, (cores or 1) // torch.get_num_threads()))


def _mean_losses(logits: Tensor, y: Tensor) -> Tensor:
    """Each row's mean cross-entropy, (R,), of `logits` (R, B, classes) against `y` (R, B):
    one loss computation for every environment's minibatch."""
    return cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y).mean(1)
