"""The host environment's fast paths give what the textbook paths give."""

from __future__ import annotations

import pytest
import torch
from helpers import train_alone

from app.contracts.actions import germinate_action
from app.contracts.stages import SeedStage
from app.training.config import RunConfig
from app.training.datasets import Dataset
from app.training.environment import HostEnvironment
from app.training.environment_batch import EnvironmentBatch


def test_the_same_seed_gives_the_same_epochs_whatever_the_global_generator(
    synthetic: Dataset,
) -> None:
    config = RunConfig(dataset="synthetic")

    def epochs(global_seed: int) -> list[tuple[float, float, float, float]]:
        torch.manual_seed(global_seed)
        env = HostEnvironment(
            0, synthetic, config.host, config.slot, config.tracker, 3, torch.device("cpu")
        )
        run_epoch = train_alone(env)
        runs = [run_epoch(epoch).signals for epoch in range(1, 4)]
        return [(s.train_loss, s.train_accuracy, s.val_loss, s.val_accuracy) for s in runs]

    assert epochs(0) == epochs(1)


def test_an_environment_steps_the_same_beside_others_as_alone(synthetic: Dataset) -> None:
    """What lets an environment move to another process: its epochs, seed included, do
    not depend on which environments are stacked beside it, up to rounding (the stacked
    kernels sum in an order that depends on how many hosts are stacked)."""
    config = RunConfig(dataset="synthetic")

    def epochs(env_ids: list[int]) -> list[tuple[float, float, float, float, str]]:
        envs = [
            HostEnvironment(
                i, synthetic, config.host, config.slot, config.tracker, 3 + i, torch.device("cpu")
            )
            for i in env_ids
        ]
        batch = EnvironmentBatch(envs)
        found = []
        for epoch in range(1, 6):
            if epoch == 3:
                for env in envs:
                    env.apply(germinate_action("conv_light"))
            s = batch.run_epoch(epoch)[-1].signals
            stage = envs[-1].slot.stage.name
            found.append((s.train_loss, s.train_accuracy, s.val_loss, s.val_accuracy, stage))
        return found

    beside, alone = epochs([0, 1, 2]), epochs([2])
    one_sample = 100 / len(synthetic.val_y)
    for (*numbers, stage), (*expected, expected_stage) in zip(beside, alone, strict=True):
        assert stage == expected_stage
        assert numbers[0::2] == pytest.approx(expected[0::2], rel=1e-3)  # losses
        assert numbers[1::2] == pytest.approx(expected[1::2], abs=one_sample)  # accuracies


def test_a_dataset_already_on_the_device_is_the_same_object(synthetic: Dataset) -> None:
    assert synthetic.to(torch.device("cpu")) is synthetic


def test_a_dataset_moves_to_another_device_whole(synthetic: Dataset) -> None:
    moved = synthetic.to(torch.device("meta"))
    for name in ("train_x", "train_y", "val_x", "val_y"):
        tensor, original = getattr(moved, name), getattr(synthetic, name)
        assert tensor.device.type == "meta"
        assert (tensor.shape, tensor.dtype) == (original.shape, original.dtype)
    assert (moved.name, moved.num_classes) == (synthetic.name, synthetic.num_classes)
    assert synthetic.train_x.is_cpu


def test_seed_outcomes_add_up_over_episodes(synthetic: Dataset) -> None:
    config = RunConfig(dataset="synthetic")
    env = HostEnvironment(
        0, synthetic, config.host, config.slot, config.tracker, 7, torch.device("cpu")
    )
    batch = EnvironmentBatch([env])
    assert env.slot.germinate("norm", "first")
    assert env.slot.cull("controller")
    assert env.seed_outcomes == {("norm", SeedStage.CULLED): 1}

    batch.reset()
    assert env.seed_outcomes == {("norm", SeedStage.CULLED): 1}
    assert env.slot.germinate("conv_light", "second")
    assert env.slot.cull("controller")
    assert env.seed_outcomes == {("norm", SeedStage.CULLED): 1, ("conv_light", SeedStage.CULLED): 1}
