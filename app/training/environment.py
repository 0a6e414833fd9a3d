"""One training environment: a host learning a dataset, its seed slot, tracker and governor.

The vectorized loop owns N of these and an `EnvironmentBatch` steps them in lockstep; each
has its own host, data order and tracker, so the episodes of one batch are independent
samples.

Each environment draws all its randomness (its data order, its hosts' and seeds'
initial weights, the noise its controller's actions are sampled with) from a generator of
its own, seeded from the run's seed and its id: an environment's episodes are the same
whichever process steps it, and whichever other environments step beside it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch.nn.functional import cross_entropy

from app.contracts.actions import Action
from app.contracts.events import EventType, TelemetryEvent
from app.contracts.signals import TrainingSignals
from app.contracts.stages import SeedStage
from app.control.tracker import SignalTracker, TrackerConfig
from app.model.host import HostCNN
from app.model.slot import SeedSlot, SlotConfig
from app.settings import check
from app.telemetry import emit
from app.training.datasets import Dataset
from app.training.governor import Governor, Restorable
from app.training.health import CheckCounts, HostHealthConfig, HostHealthMonitor, LeakProbe
from app.training.stacked_adam import EnvAdamState, SavedAdamState

EVAL_CHUNK = 2048


@dataclass(frozen=True)
class HostConfig:
    """The host network and its optimizers.

    Calibrated on digits so that seeds have something to add, as the original cut its
    CIFAR host to a fraction of its channels: four channels at the seed slot, pooled
    globally, cap the host alone near 79% validation accuracy (72-86% across seeds), and
    its learning rate decays by `lr_decay` per epoch so it converges and the stabilization
    latch fires at epoch 10-12. A seed gets a fresh optimizer at `seed_lr`; a conv_heavy
    seed grown then lifts the host to about 86% by epoch 22, the default episode's end
    (benchmarks/host_headroom.py).
    """

    width: int = 16
    block2_width: int = 4
    block3_width: int | None = None
    lr: float = 0.03
    lr_decay: float = 0.7
    seed_lr: float = 0.01
    batch_size: int = 16

    def __post_init__(self) -> None:
        check(self, "width", "block2_width", "block3_width", "batch_size", ge=1)
        check(self, "lr", "seed_lr", gt=0)
        check(self, "lr_decay", gt=0, le=1)


@dataclass(frozen=True)
class Validation:
    """A host's validation loss and accuracy, and `counterfactual`: its validation
    accuracy with the seed disabled, when the seed's lifecycle needs it."""

    loss: float
    accuracy: float
    counterfactual: float | None


@dataclass(frozen=True)
class EpochMeasurements:
    """What the batched epoch measured for one environment."""

    train_loss: float
    train_accuracy: float
    validation: Validation


@dataclass(frozen=True)
class EpochResult:
    signals: TrainingSignals
    rolled_back: bool
    duration_s: float


class HostEnvironment:
    """One environment's host, seed slot, data order, tracker, governor and health checks.

    The environments of a batch are trained together by an `EnvironmentBatch`, which
    builds each episode's hosts, steps them as one stacked computation and hands each
    environment its epoch's numbers; the environment then does everything that is its own:
    the governor's verdict and rollback, the seed lifecycle, the tracker and its events.
    """

    host: HostCNN
    host_optimizer: EnvAdamState
    tracker: SignalTracker
    governor: Governor
    health: HostHealthMonitor
    signals: TrainingSignals | None
    host_params: int

    def __init__(
        self,
        env_id: int,
        dataset: Dataset,
        host_config: HostConfig,
        slot_config: SlotConfig,
        tracker_config: TrackerConfig,
        seed: int,
        device: torch.device,
        health_config: HostHealthConfig | None = None,
    ) -> None:
        self.env_id = env_id
        self.dataset = dataset.to(device)
        self.host_config = host_config
        self.slot_config = slot_config
        self.tracker_config = tracker_config
        self.device = device
        self.health_config = health_config or HostHealthConfig()
        self.rng = torch.Generator().manual_seed(seed)
        self.seeds_grown = 0
        self.check_counts = CheckCounts()
        # The slot's own tally (the same object) and those of the episodes before.
        self._episode_outcomes: Counter[tuple[str, SeedStage]] = Counter()
        self._earlier_outcomes: Counter[tuple[str, SeedStage]] = Counter()

    @contextmanager
    def drawing(self) -> Iterator[None]:
        """Inside, torch's global generator (which module initialization draws from) is
        seeded from this environment's own; outside, it is as it was before."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**62, (), generator=self.rng)))
            yield

    def build_host(self) -> HostCNN:
        """A freshly initialized host for this environment's next episode."""
        data = self.dataset
        with self.drawing():
            host = HostCNN(
                data.in_channels,
                data.num_classes,
                data.image_size,
                width=self.host_config.width,
                block2_width=self.host_config.block2_width,
                block3_width=self.host_config.block3_width,
                env_id=self.env_id,
                slot_config=self.slot_config,
            )
        return host.to(self.device)

    def reset(self, host: HostCNN, host_optimizer: EnvAdamState, gradients: LeakProbe) -> None:
        """Start a new episode on `host` (from `build_host`), whose weights the batch's
        optimizer trains; `host_optimizer` is this environment's share of it, rolled back
        with the weights, and `gradients` probes the seed's isolation."""
        self._earlier_outcomes += self._episode_outcomes
        self._episode_outcomes = host.slot.outcomes
        self.host = host
        self.host_optimizer = host_optimizer
        self.tracker = SignalTracker(self.tracker_config, env_id=self.env_id)
        self.governor = Governor(self.host)
        self._seed_state: SavedAdamState | None = None
        self._optimized_seed: str | None = None
        self.governor.snapshot(optimizers=[host_optimizer])
        self.signals = None
        self.host_params = sum(p.numel() for p in self.host.host_parameters())
        self.health = HostHealthMonitor(
            self.health_config, self.env_id, self.host.slot.slot_id, gradients, self.check_counts
        )

    @property
    def seed_params(self) -> int:
        return sum(p.numel() for p in self.host.seed_parameters())

    @property
    def seed_outcomes(self) -> Counter[tuple[str, SeedStage]]:
        """How the seeds of every episode this environment ran ended, by blueprint and
        stage (FOSSILIZED or CULLED), since this process started."""
        return self._earlier_outcomes + self._episode_outcomes

    @property
    def slot(self) -> SeedSlot:
        return self.host.slot

    def begin_epoch(self, epoch: int) -> None:
        self.host.slot.begin_epoch(epoch)
        self.health.begin_epoch(epoch)

    def seed_optimizer_state(self) -> SavedAdamState | None:
        """The live seed's optimizer state, fresh for every new seed; None without a seed.
        The batch steps the seeds stacked by blueprint and keeps each one's share here."""
        seed_id = self.host.slot.seed_id if self.host.seed_parameters() else None
        if seed_id != self._optimized_seed:
            self._seed_state = None if seed_id is None else SavedAdamState()
            self._optimized_seed = seed_id
        return self._seed_state

    def finish_epoch(self, epoch: int, started: float, measured: EpochMeasurements) -> EpochResult:
        """Judge the trained epoch: roll back a catastrophe, else advance the seed
        lifecycle and keep a snapshot; then update the tracker and report the epoch.
        `started` is the epoch's `time.perf_counter()` start."""
        validation = measured.validation
        val_loss, val_accuracy = validation.loss, validation.accuracy
        rolled_back = self.governor.check(val_loss)
        if rolled_back:
            if self.governor.rollback():
                self._seed_state, self._optimized_seed = None, None
            val_loss, val_accuracy = self.evaluate()
        else:
            self.host.slot.step_epoch(val_accuracy, validation.counterfactual, epoch=epoch)
            self.governor.snapshot(val_loss, optimizers=self._optimizers())
        self.signals = self.tracker.update(
            epoch, measured.train_loss, measured.train_accuracy, val_loss, val_accuracy
        )
        duration = time.perf_counter() - started
        self._emit_epoch(epoch, duration, rolled_back)
        self.health.end_epoch(epoch, duration, val_accuracy, self.host.slot.state)
        return EpochResult(self.signals, rolled_back, duration)

    def apply(self, action: Action) -> bool:
        """Carry out a controller action on the slot; True if the slot changed."""
        slot = self.host.slot
        blueprint = action.blueprint
        if blueprint is not None:
            seed_id = f"env{self.env_id}_seed_{self.seeds_grown}"
            with self.drawing():
                grown = slot.germinate(blueprint, seed_id)
            self.seeds_grown += grown
            return grown
        if action == Action.FOSSILIZE:
            return slot.fossilize()
        if action == Action.CULL:
            return slot.cull("controller")
        return False

    def validate(self) -> Validation:
        """The epoch's validation passes: the host as it is and, when the seed's
        lifecycle needs it, the host with its seed disabled. Touches only this
        environment, so environments validate on threads of their own."""
        loss, accuracy = self.evaluate()
        if not self.slot.measures_counterfactual:
            return Validation(loss, accuracy, None)
        with self.host.seed_disabled():
            return Validation(loss, accuracy, self.evaluate()[1])

    @torch.inference_mode()
    def evaluate(self) -> tuple[float, float]:
        """Validation loss and accuracy of this host as it is (one read from the device)."""
        data, host = self.dataset, self.host
        host.eval()
        sums = torch.zeros(2, device=self.device)
        chunks = zip(
            torch.split(data.val_x, EVAL_CHUNK), torch.split(data.val_y, EVAL_CHUNK), strict=True
        )
        for x, y in chunks:
            logits = host.predict(x)
            sums[0] += cross_entropy(logits, y, reduction="sum")
            sums[1] += (logits.argmax(1) == y).sum()
        loss_sum, correct = sums.tolist()
        count = len(data.val_y)
        return loss_sum / count, 100.0 * correct / count

    def _optimizers(self) -> list[Restorable]:
        seed = self.seed_optimizer_state()
        return [self.host_optimizer] if seed is None else [self.host_optimizer, seed]

    def _emit_epoch(self, epoch: int, duration: float, rolled_back: bool) -> None:
        assert self.signals is not None
        state = self.host.slot.state
        emit(
            TelemetryEvent(
                event_type=EventType.EPOCH_COMPLETED,
                message=f"env {self.env_id} epoch {epoch}",
                epoch=epoch,
                seed_id=state.seed_id,
                slot_id=self.host.slot.slot_id,
                data={
                    "env_id": self.env_id,
                    "train_loss": self.signals.train_loss,
                    "train_accuracy": self.signals.train_accuracy,
                    "val_loss": self.signals.val_loss,
                    "val_accuracy": self.signals.val_accuracy,
                    "seed_stage": state.stage.name,
                    "alpha": state.alpha,
                    "host_stabilized": self.signals.host_stabilized,
                    "rolled_back": rolled_back,
                    "duration_s": duration,
                },
            )
        )
