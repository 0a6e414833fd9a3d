"""The stacked, lockstep epoch gives what training each environment on its own gives.

The reference is the textbook loop, one environment at a time: its own `HostCNN` forward
(seed blended or isolated as its stage says), a cross-entropy per minibatch, backward,
`torch.optim.Adam` steps for the host and the seed, an `ExponentialLR` step, and its own
validation and counterfactual passes. Both start from identical hosts and seeds (the same
random state) with seeds in different stages, and see the same data order.

Both run in float64. The batched path sums in a different order (grouped convolutions,
one loss for all environments), and Adam's first steps are of size `lr` whatever the
gradient's size, so a weight whose gradient is nearly zero can take a full step of either
sign on a rounding difference: in float32 that happens within an epoch, in float64 it does
not. Tolerance: weights and validation logits to 1e-9, losses to 1e-9 relative,
accuracies exactly. The conv biases in front of a GroupNorm are left out of the weight
comparison: the norm removes them, so their gradient is pure rounding noise.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
import torch
from helpers import count_host_reads
from torch import nn
from torch.nn.functional import cross_entropy
from torch.optim import Adam
from torch.optim.lr_scheduler import ExponentialLR

from app.contracts.stages import SeedStage
from app.model.host import HostCNN
from app.model.parameter_stack import ParameterStack
from app.training.config import RunConfig
from app.training.datasets import Dataset
from app.training.environment import HostEnvironment
from app.training.environment_batch import EnvironmentBatch, validation_threads
from app.training.health import HostHealthConfig
from app.training.stacked_adam import StackedAdam

CONFIG = RunConfig(dataset="synthetic")
# One environment per situation, every blueprint once: no seed, TRAINING seeds (the
# isolated path), a BLENDING seed (alpha 0.4), a PROBATIONARY one (blended, judged by its
# counterfactual) and a FOSSILIZED one (always blended, no counterfactual).
STAGES: list[tuple[str | None, SeedStage]] = [
    (None, SeedStage.DORMANT),
    ("conv_heavy", SeedStage.TRAINING),
    ("attention", SeedStage.BLENDING),
    ("depthwise", SeedStage.FOSSILIZED),
    ("norm", SeedStage.PROBATIONARY),
    ("conv_light", SeedStage.TRAINING),
]


@dataclass(frozen=True)
class Measured:
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    counterfactual: float | None


@pytest.fixture
def float64(synthetic: Dataset) -> Iterator[Dataset]:
    """The synthetic data in float64, with hosts and seeds built in float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield replace(synthetic, train_x=synthetic.train_x.double(), val_x=synthetic.val_x.double())
    finally:
        torch.set_default_dtype(previous)


def _environments(
    dataset: Dataset, health: HostHealthConfig | None = None, device: str = "cpu"
) -> tuple[list[HostEnvironment], EnvironmentBatch]:
    """Environments in a fresh episode, each seed brought to its stage; the same random
    state always gives the same weights."""
    torch.manual_seed(0)
    config = CONFIG.host, CONFIG.slot, CONFIG.tracker
    envs = [
        HostEnvironment(i, dataset, *config, 7 + i, torch.device(device), health)
        for i in range(len(STAGES))
    ]
    batch = EnvironmentBatch(envs)
    for env, (blueprint, stage) in zip(envs, STAGES, strict=True):
        if blueprint is not None:
            assert env.slot.germinate(blueprint, f"seed{env.env_id}")
        _advance(env, stage)
    return envs, batch


def _advance(env: HostEnvironment, stage: SeedStage) -> None:
    slot = env.slot
    for _ in range(20):
        if slot.stage == stage:
            return
        if slot.stage == SeedStage.PROBATIONARY and stage == SeedStage.FOSSILIZED:
            assert slot.fossilize()
        else:
            slot.step_epoch(50.0, counterfactual_accuracy=40.0)
    assert slot.stage == stage, f"stuck in {slot.stage.name}"


def _reference_epoch(env: HostEnvironment) -> Measured:
    """One epoch of `env` alone, the textbook way."""
    host, data = env.host, env.dataset
    host_optimizer = Adam(host.host_parameters(), CONFIG.host.lr, foreach=False)
    schedule = ExponentialLR(host_optimizer, CONFIG.host.lr_decay)
    seed_params = host.seed_parameters()
    seed_optimizer = Adam(seed_params, CONFIG.host.seed_lr, foreach=False) if seed_params else None
    host.train()
    order = torch.randperm(len(data.train_y), generator=env.rng)
    loss_sum, correct = 0.0, 0
    for index in order.split(CONFIG.host.batch_size):
        x, y = data.train_x[index], data.train_y[index]
        output = host(x)
        loss = cross_entropy(output.logits, y)
        total = loss if output.seed_logits is None else loss + cross_entropy(output.seed_logits, y)
        for optimizer in (host_optimizer, seed_optimizer):
            if optimizer is not None:
                optimizer.zero_grad()
        total.backward()
        for optimizer in (host_optimizer, seed_optimizer):
            if optimizer is not None:
                optimizer.step()
        loss_sum += loss.item() * len(y)
        correct += int((output.logits.argmax(1) == y).sum())
    schedule.step()
    count = len(order)
    val_loss, val_accuracy = env.evaluate()
    counterfactual = None
    if env.slot.measures_counterfactual:
        with host.seed_disabled():
            counterfactual = env.evaluate()[1]
    env.slot.step_epoch(val_accuracy, counterfactual, epoch=1)  # as the trainer does next
    return Measured(
        loss_sum / count, 100.0 * correct / count, val_loss, val_accuracy, counterfactual
    )


def _batched_epoch(envs: list[HostEnvironment], batch: EnvironmentBatch) -> list[Measured]:
    counterfactual_needed = [env.slot.measures_counterfactual for env in envs]
    results = batch.run_epoch(1)
    measured = []
    for env, result, needed in zip(envs, results, counterfactual_needed, strict=True):
        signals = result.signals
        contribution = env.slot.state.last_counterfactual
        counterfactual = (
            signals.val_accuracy - contribution if needed and contribution is not None else None
        )
        measured.append(
            Measured(
                signals.train_loss,
                signals.train_accuracy,
                signals.val_loss,
                signals.val_accuracy,
                counterfactual,
            )
        )
    return measured


def _weights(host: HostCNN) -> dict[str, torch.Tensor]:
    """Every weight but the conv biases a GroupNorm follows (see the module docstring)."""
    normed = {"block1.0.bias", "block2.0.bias"}
    return {k: v.detach().clone() for k, v in host.state_dict().items() if k not in normed}


@torch.inference_mode()
def _val_logits(host: HostCNN, dataset: Dataset) -> torch.Tensor:
    host.eval()
    return host(dataset.val_x).logits


def test_a_batched_epoch_matches_each_environment_trained_alone(float64: Dataset) -> None:
    envs, batch = _environments(float64)
    batched = _batched_epoch(envs, batch)
    reference_envs, _ = _environments(float64)
    reference = [_reference_epoch(env) for env in reference_envs]

    for env, alone, ours, theirs in zip(envs, reference_envs, batched, reference, strict=True):
        label = f"env {env.env_id} ({env.slot.stage.name})"
        assert ours.train_loss == pytest.approx(theirs.train_loss, rel=1e-9), label
        assert ours.val_loss == pytest.approx(theirs.val_loss, rel=1e-9), label
        assert ours.train_accuracy == pytest.approx(theirs.train_accuracy), label
        assert ours.val_accuracy == pytest.approx(theirs.val_accuracy), label
        assert ours.counterfactual == pytest.approx(theirs.counterfactual), label
        ours_logits, their_logits = _val_logits(env.host, float64), _val_logits(alone.host, float64)
        torch.testing.assert_close(ours_logits, their_logits, atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(_weights(env.host), _weights(alone.host), atol=1e-9, rtol=1e-9)
    assert [env.slot.state for env in envs] == [env.slot.state for env in reference_envs]


def test_the_batched_epoch_trains_every_stage(synthetic: Dataset) -> None:
    """The comparison above is not vacuous: every host and every seed moved."""
    envs, batch = _environments(synthetic)
    before = [_weights(env.host) for env in envs]
    batch.run_epoch(1)
    for env, weights in zip(envs, before, strict=True):
        after = _weights(env.host)
        moved = [name for name in weights if not torch.equal(weights[name], after[name])]
        assert any(name.startswith("head.") for name in moved), env.env_id
        if env.host.seed_parameters():
            assert any(name.startswith("slot.seed.") for name in moved), env.env_id


def test_stacked_adam_follows_torch_adam_per_environment_through_a_rollback() -> None:
    """Two environments' weights under one StackedAdam against one torch Adam each; env 1
    is rewound to an earlier state (moments, step count and learning rate) halfway, and
    the rate stops decaying then, so the last steps run with per-environment counts the
    optimizer advances on the device."""
    torch.manual_seed(0)
    envs, size = 2, 5
    start = torch.randn(envs, size)
    gradients = [torch.randn(envs, size) for _ in range(10)]

    modules = [nn.Linear(size, 1, bias=False) for _ in range(envs)]
    with torch.no_grad():
        for module, row in zip(modules, start, strict=True):
            module.weight.copy_(row)
    stack = ParameterStack(modules)
    flat = stack.flat
    stacked = StackedAdam(stack, lr=0.1)
    params = [start[i].clone().requires_grad_() for i in range(envs)]
    adams = [Adam([p], lr=0.1, foreach=False) for p in params]
    schedules = [ExponentialLR(adam, 0.5) for adam in adams]

    saved_stacked = saved_torch = saved_weights = None
    for step, grad in enumerate(gradients):
        flat.grad = grad.reshape(-1).clone()
        stacked.step()
        for p, adam, g in zip(params, adams, grad, strict=True):
            p.grad = g.clone()
            adam.step()
        if step < 5:
            stacked.decay_lr(0.5)
            for schedule in schedules:
                schedule.step()
        if step == 2:
            saved_stacked = stacked.env(1).state_dict()
            saved_torch = copy.deepcopy(adams[1].state_dict())
            saved_weights = params[1].detach().clone()
        if step == 5:
            assert saved_stacked is not None and saved_torch is not None
            stacked.env(1).load_state_dict(saved_stacked)
            adams[1].load_state_dict(saved_torch)
            with torch.no_grad():
                params[1].copy_(saved_weights)
                flat.view(envs, size)[1] = saved_weights
    assert stacked.steps == [10, 7] and stacked.lrs[1] == pytest.approx(0.1 * 0.5**3)
    expected = torch.stack([p.detach() for p in params]).reshape(-1)
    torch.testing.assert_close(flat.detach(), expected)


DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
    ),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("check_every", [0, 10])
def test_an_epoch_reads_the_device_once_per_pass_and_a_step_only_when_checked(
    synthetic: Dataset, monkeypatch: pytest.MonkeyPatch, device: str, check_every: int
) -> None:
    """Host syncs: the training pass reads its sums back once, and so does each
    environment's validation pass and counterfactual pass; a training step reads nothing
    unless the health checks sample it, and then once per environment."""
    health = HostHealthConfig(isolation_check_every=check_every)
    envs, batch = _environments(synthetic, health, device)
    batch.run_epoch(1)
    checked_before = sum(env.health.counts.steps_checked for env in envs)
    counterfactuals = sum(env.slot.measures_counterfactual for env in envs)

    with count_host_reads(monkeypatch) as reads:
        batch.run_epoch(2)

    checked = sum(env.health.counts.steps_checked for env in envs) - checked_before
    assert (checked > 0) == (check_every > 0)
    assert counterfactuals > 0
    assert reads == ["tolist"] * (1 + len(envs) + counterfactuals + checked)


def test_environments_validated_on_threads_measure_what_they_measure_in_turn(
    synthetic: Dataset,
) -> None:
    """Validation runs on one thread per free core; each pass is its own host's, so the
    numbers are those of the passes run one after another."""
    envs, batch = _environments(synthetic)
    batch.run_epoch(1)
    if validation_threads(batch.device, len(envs)) < 2:
        pytest.skip("needs two cores free of intra-op threads")
    assert any(env.slot.measures_counterfactual for env in envs)

    in_turn = [env.validate() for env in envs]

    assert batch._validate() == in_turn
    assert validation_threads(torch.device("cuda"), len(envs)) == 1
