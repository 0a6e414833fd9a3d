"""Health checks on one host's training: isolation, gradient norms and performance.

Three detectors (docs/events.md) watch one environment's host as it trains:

- ISOLATION_VIOLATION: while a seed is TRAINING its own loss must put no gradient into the
  host (the seed learns on detached activations through a head with detached weights). On a
  sampled step the monitor differentiates the seed's loss with respect to the host's
  parameters; any gradient that arrives is a leak. At most once per seed.
- GRADIENT_ANOMALY: the host's total gradient norm (before the optimizer step) below
  `grad_vanishing` or above `grad_exploding`, on the same sampled steps; at most once per
  epoch. It is about the host network, distinct from GRADIENT_PATHOLOGY_DETECTED (the policy).
- PERFORMANCE_DEGRADATION: an epoch slower than `epoch_time_budget_s`, or host validation
  accuracy falling more than `post_fossilization_drop` points below its value at a seed's
  fossilization within `post_fossilization_epochs` epochs (once per fossilized seed).

The checks are sampled so that the hot path stays cheap: a step is checked every
`isolation_check_every` steps of the episode and on the first step of every epoch, and a
checked step reads its numbers back from the device once (one `.tolist()`); other steps
add no work and no host-device synchronization.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from app.contracts.events import EventType, Severity, TelemetryEvent
from app.contracts.seeds import SeedState
from app.contracts.stages import SeedStage
from app.settings import check
from app.telemetry import emit

# How many leaking parameter names an ISOLATION_VIOLATION lists.
_LEAK_NAMES = 5

# Per-parameter norms of the gradient a loss puts into one host's weights, with the
# parameters' names; None when the loss cannot reach them.
LeakProbe = Callable[[Tensor], tuple[Tensor, list[str]] | None]


@dataclass(frozen=True)
class HostHealthConfig:
    """Thresholds of the host health checks (see the module docstring).

    `isolation_check_every`: sample every n-th training step of an episode (and the first
    step of each epoch) for the isolation and gradient-norm checks; 0 turns both off.
    `epoch_time_budget_s`: None turns the epoch time check off.
    `post_fossilization_drop`: in percentage points of validation accuracy.
    """

    isolation_check_every: int = 50
    grad_vanishing: float = 1e-7
    grad_exploding: float = 1e3
    epoch_time_budget_s: float | None = None
    post_fossilization_drop: float = 5.0
    post_fossilization_epochs: int = 5

    def __post_init__(self) -> None:
        check(self, "isolation_check_every", ge=0)
        positive = [item.name for item in fields(self) if item.name != "isolation_check_every"]
        check(self, *positive, gt=0)
        check(self, "grad_vanishing", lt="grad_exploding")


@dataclass
class CheckCounts:
    """How many training steps were checked, and how many of those probed a TRAINING
    seed's isolation; kept by the environment across episodes for the run summary."""

    steps_checked: int = 0
    isolation_probes: int = 0


@dataclass
class _Fossilized:
    seed_id: str
    accuracy: float
    epochs_seen: int = 0


class HostHealthMonitor:
    """The health checks of one environment's host for one episode (built in `reset`).

    The trainer calls `begin_epoch`, then per training step `sampled`; on a sampled step
    `isolation_probe` (before backward, while the graph is alive) and `check_step` (after
    backward, before the optimizer step); and `end_epoch` once the epoch is done.
    `leaks` differentiates a loss with respect to the host weights the step trains.
    """

    def __init__(
        self,
        config: HostHealthConfig,
        env_id: int,
        slot_id: str,
        leaks: LeakProbe,
        counts: CheckCounts | None = None,
    ) -> None:
        self.config = config
        self.counts = counts or CheckCounts()
        self.env_id = env_id
        self.slot_id = slot_id
        self._leaks = leaks
        self._step = 0
        self._epoch = 0
        self._step_in_epoch = 0
        self._gradient_epoch: int | None = None
        self._isolation_reported: set[str] = set()
        self._fossilized: dict[str, _Fossilized] = {}
        self._previous_accuracy: float | None = None

    def begin_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        self._step_in_epoch = 0

    def sampled(self) -> bool:
        """Whether the training step about to run is checked; counts the step."""
        every = self.config.isolation_check_every
        checked = every > 0 and (self._step_in_epoch == 0 or self._step % every == 0)
        self._step += 1
        self._step_in_epoch += 1
        return checked

    def isolation_probe(
        self, seed_loss: Tensor | None, state: SeedState
    ) -> tuple[Tensor, list[str]] | None:
        """Per-parameter norms of the gradient the seed's loss puts into the host, and the
        parameters' names, still on the device; None when there is nothing to check or no
        host parameter is reachable from the seed's loss (isolation holds by construction).
        """
        seed_id = state.seed_id
        if seed_loss is None or state.stage != SeedStage.TRAINING or seed_id is None:
            return None
        if seed_id in self._isolation_reported:
            return None
        self.counts.isolation_probes += 1
        return self._leaks(seed_loss)

    def check_step(
        self, grad_norm: Tensor | None, probe: tuple[Tensor, list[str]] | None, state: SeedState
    ) -> None:
        """After backward on a sampled step: the host gradient norm (None without a
        gradient) and the probe's leak, read back together."""
        self.counts.steps_checked += 1
        parts: list[Tensor] = []
        if grad_norm is not None:
            parts.append(grad_norm.reshape(1).float())
        if probe is not None:
            parts.append(probe[0].float())
        if not parts:
            return
        values = torch.cat(parts).tolist()
        step = self._step - 1
        if grad_norm is not None:
            self._check_gradient(values[0], step, state.seed_id)
            values = values[1:]
        if probe is not None:
            self._check_isolation(values, probe[1], state, step)

    def end_epoch(
        self, epoch: int, duration_s: float, val_accuracy: float, state: SeedState
    ) -> None:
        """The epoch-level checks: time budget and accuracy after a fossilization."""
        budget = self.config.epoch_time_budget_s
        if budget is not None and duration_s > budget:
            self._emit(
                EventType.PERFORMANCE_DEGRADATION,
                f"env {self.env_id} epoch {epoch} took {duration_s:.3f}s (budget {budget}s)",
                Severity.WARNING,
                state.seed_id,
                {
                    "env_id": self.env_id,
                    "epoch": epoch,
                    "kind": "epoch_time",
                    "budget_s": budget,
                    "measured_s": duration_s,
                },
            )
        seed_id = state.seed_id
        if (
            state.stage == SeedStage.FOSSILIZED
            and seed_id is not None
            and seed_id not in self._fossilized
        ):
            # Fossilization happens between epochs: the accuracy it was decided on is the
            # previous epoch's.
            baseline = self._previous_accuracy
            self._fossilized[seed_id] = _Fossilized(
                seed_id, val_accuracy if baseline is None else baseline
            )
        for watched in list(self._fossilized.values()):
            if watched.epochs_seen >= self.config.post_fossilization_epochs:
                continue
            watched.epochs_seen += 1
            drop = watched.accuracy - val_accuracy
            if drop > self.config.post_fossilization_drop:
                watched.epochs_seen = self.config.post_fossilization_epochs  # once per seed
                self._emit(
                    EventType.PERFORMANCE_DEGRADATION,
                    f"env {self.env_id}: accuracy fell {drop:.1f} points after "
                    f"{watched.seed_id} fossilized",
                    Severity.WARNING,
                    watched.seed_id,
                    {
                        "env_id": self.env_id,
                        "epoch": epoch,
                        "kind": "post_fossilization",
                        "seed_id": watched.seed_id,
                        "accuracy_at_fossilization": watched.accuracy,
                        "accuracy": val_accuracy,
                        "drop": drop,
                        "threshold": self.config.post_fossilization_drop,
                    },
                )
        self._previous_accuracy = val_accuracy

    def _check_gradient(self, norm: float, step: int, seed_id: str | None) -> None:
        if self._gradient_epoch == self._epoch:
            return
        config = self.config
        if not math.isfinite(norm) or norm > config.grad_exploding:
            kind, bound = "exploding", config.grad_exploding
        elif norm < config.grad_vanishing:
            kind, bound = "vanishing", config.grad_vanishing
        else:
            return
        self._gradient_epoch = self._epoch
        self._emit(
            EventType.GRADIENT_ANOMALY,
            f"env {self.env_id}: host gradient norm {norm:.3g} {kind} (bound {bound:g})",
            Severity.WARNING,
            seed_id,
            {
                "env_id": self.env_id,
                "epoch": self._epoch,
                "step": step,
                "grad_norm": norm,
                "bound": bound,
                "kind": kind,
            },
        )

    def _check_isolation(
        self, norms: list[float], names: list[str], state: SeedState, step: int
    ) -> None:
        leaked = [(name, n) for name, n in zip(names, norms, strict=True) if n != 0.0]
        if not leaked:
            return
        seed_id = state.seed_id
        assert seed_id is not None
        self._isolation_reported.add(seed_id)
        total = math.sqrt(sum(n * n for _, n in leaked))
        self._emit(
            EventType.ISOLATION_VIOLATION,
            f"env {self.env_id}: seed {seed_id} in TRAINING put gradient into the host",
            Severity.ERROR,
            seed_id,
            {
                "env_id": self.env_id,
                "seed_id": seed_id,
                "epoch": self._epoch,
                "step": step,
                "leaked_grad_norm": total,
                "parameters": [name for name, _ in leaked[:_LEAK_NAMES]],
                "parameters_leaking": len(leaked),
            },
        )

    def _emit(
        self,
        event_type: EventType,
        message: str,
        severity: Severity,
        seed_id: str | None,
        data: dict[str, object],
    ) -> None:
        emit(
            TelemetryEvent(
                event_type=event_type,
                message=message,
                data=data,
                seed_id=seed_id,
                slot_id=self.slot_id,
                epoch=self._epoch,
                severity=severity,
            )
        )
