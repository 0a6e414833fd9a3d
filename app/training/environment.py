"""One training environment: a host learning a dataset, its seed slot, tracker and governor.

The vectorized loop owns N of these and steps them in lockstep; each has its own host,
data order and tracker, so the episodes of one batch are independent samples.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch.nn.functional import cross_entropy
from torch.optim import Adam, Optimizer
from torch.optim.lr_scheduler import ExponentialLR

from app.contracts.actions import Action
from app.contracts.events import EventType, TelemetryEvent
from app.contracts.signals import TrainingSignals
from app.control.tracker import SignalTracker, TrackerConfig
from app.model.host import HostCNN
from app.model.slot import SeedSlot, SlotConfig
from app.settings import check
from app.telemetry import emit
from app.training.datasets import Dataset
from app.training.governor import Governor
from app.training.health import CheckCounts, HostHealthConfig, HostHealthMonitor

_EVAL_CHUNK = 2048
# Devices with a fused Adam kernel. The host's step is dispatch-bound (about a thousand
# parameters in a dozen tensors): one fused kernel per step instead of a handful of ops
# per tensor cuts the optimizer's share of a CPU step from about a third to a tenth.
_FUSED_ADAM_DEVICES = frozenset({"cpu", "cuda", "mps", "xpu"})


@dataclass(frozen=True)
class HostConfig:
    """The host network and its optimizers.

    Calibrated on digits so that seeds have something to add, as the original cut its
    CIFAR host to a fraction of its channels: four channels at the seed slot, pooled
    globally, cap the host alone near 79% validation accuracy (72-86% across seeds), and
    its learning rate decays by `lr_decay` per epoch so it converges and the stabilization
    latch fires at epoch 10-12. A seed gets a fresh optimizer at `seed_lr`; a conv_heavy
    seed grown then lifts the host to about 89% by epoch 25 (benchmarks/host_headroom.py).
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
class EpochResult:
    signals: TrainingSignals
    rolled_back: bool
    duration_s: float


def adam(params: list[torch.nn.Parameter], lr: float, device: torch.device) -> Optimizer:
    """Adam, fused where the device has the kernel (same update, one kernel per step)."""
    return Adam(params, lr, fused=device.type in _FUSED_ADAM_DEVICES)


class HostEnvironment:
    """Trains one host for an episode of epochs and applies controller actions to its slot."""

    def __init__(
        self,
        env_id: int,
        dataset: Dataset,
        host_config: HostConfig,
        slot_config: SlotConfig,
        tracker_config: TrackerConfig,
        data_seed: int,
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
        self.data_order = torch.Generator().manual_seed(data_seed)
        self.seeds_grown = 0
        self.check_counts = CheckCounts()
        self.reset()

    def reset(self) -> None:
        """Start a new episode: a fresh host, tracker, governor and optimizers."""
        data = self.dataset
        self.host = HostCNN(
            data.in_channels,
            data.num_classes,
            data.image_size,
            width=self.host_config.width,
            block2_width=self.host_config.block2_width,
            block3_width=self.host_config.block3_width,
            env_id=self.env_id,
            slot_config=self.slot_config,
        ).to(self.device)
        self.tracker = SignalTracker(self.tracker_config, env_id=self.env_id)
        self.governor = Governor(self.host)
        self._host_optimizer = adam(self.host.host_parameters(), self.host_config.lr, self.device)
        self._host_schedule = ExponentialLR(self._host_optimizer, self.host_config.lr_decay)
        self._seed_optimizer: Optimizer | None = None
        self._optimized_seed: str | None = None
        self.governor.snapshot(optimizers=[self._host_optimizer])
        self.signals: TrainingSignals | None = None
        self.host_params = sum(p.numel() for p in self.host.host_parameters())
        self.health = HostHealthMonitor(
            self.health_config, self.env_id, self.host.slot.slot_id, self.host, self.check_counts
        )

    @property
    def seed_params(self) -> int:
        return sum(p.numel() for p in self.host.seed_parameters())

    @property
    def slot(self) -> SeedSlot:
        return self.host.slot

    def run_epoch(self, epoch: int) -> EpochResult:
        """Train one epoch, validate, advance the seed lifecycle; roll back a catastrophe."""
        started = time.perf_counter()
        self.host.slot.begin_epoch(epoch)
        self.health.begin_epoch(epoch)
        train_loss, train_accuracy = self._train_epoch()
        self._host_schedule.step()
        val_loss, val_accuracy = self._evaluate()
        counterfactual = None
        if self.host.slot.measures_counterfactual:
            with self.host.seed_disabled():
                _, counterfactual = self._evaluate()
        rolled_back = self.governor.check(val_loss)
        if rolled_back:
            if self.governor.rollback():
                self._seed_optimizer, self._optimized_seed = None, None
            val_loss, val_accuracy = self._evaluate()
        else:
            self.host.slot.step_epoch(val_accuracy, counterfactual, epoch=epoch)
            self.governor.snapshot(val_loss, optimizers=self._optimizers())
        self.signals = self.tracker.update(
            epoch, train_loss, train_accuracy, val_loss, val_accuracy
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
            grown = slot.germinate(blueprint, seed_id)
            self.seeds_grown += grown
            return grown
        if action == Action.FOSSILIZE:
            return slot.fossilize()
        if action == Action.CULL:
            return slot.cull("controller")
        return False

    def _optimizers(self) -> list[Optimizer]:
        seed_id = self.host.slot.seed_id if self.host.seed_parameters() else None
        if seed_id != self._optimized_seed:
            params = self.host.seed_parameters()
            seed_lr = self.host_config.seed_lr
            self._seed_optimizer = adam(params, seed_lr, self.device) if params else None
            self._optimized_seed = seed_id
        return [o for o in (self._host_optimizer, self._seed_optimizer) if o is not None]

    def _train_epoch(self) -> tuple[float, float]:
        data, host = self.dataset, self.host
        optimizers = self._optimizers()
        host.train()
        # The order comes from the CPU generator whatever the device, so a seed gives the
        # same data order everywhere; it is moved once and the data only indexed.
        order = torch.randperm(len(data.train_y), generator=self.data_order).to(self.device)
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        for index in torch.split(order, self.host_config.batch_size):
            x, y = data.train_x[index], data.train_y[index]
            output = host(x)
            loss = cross_entropy(output.logits, y)
            total, seed_loss = loss, None
            if output.seed_logits is not None:
                seed_loss = cross_entropy(output.seed_logits, y)
                total = total + seed_loss
            # A sampled step probes isolation while the graph is alive, then reads the
            # host gradient norm before the step; other steps do no extra work.
            state = host.slot.state if self.health.sampled() else None
            probe = None if state is None else self.health.isolation_probe(seed_loss, state)
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(total)
            if state is not None:
                self.health.check_step(probe, state)
            for optimizer in optimizers:
                optimizer.step()
            total_loss += loss.detach() * len(y)
            correct += (output.logits.argmax(1) == y).sum()
        count = len(order)
        return float(total_loss) / count, 100.0 * float(correct) / count

    @torch.inference_mode()
    def _evaluate(self) -> tuple[float, float]:
        data, host = self.dataset, self.host
        host.eval()
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        chunks = zip(
            torch.split(data.val_x, _EVAL_CHUNK), torch.split(data.val_y, _EVAL_CHUNK), strict=True
        )
        for x, y in chunks:
            logits = host(x).logits
            total_loss += cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
        count = len(data.val_y)
        return float(total_loss) / count, 100.0 * float(correct) / count

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
