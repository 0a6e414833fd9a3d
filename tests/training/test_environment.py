"""The host environment's fast paths give what the textbook paths give."""

from __future__ import annotations

import torch
from helpers import train_alone

from app.contracts.stages import SeedStage
from app.training.config import RunConfig
from app.training.datasets import Dataset
from app.training.environment import HostEnvironment
from app.training.environment_batch import EnvironmentBatch


def test_the_same_data_seed_gives_the_same_epochs(synthetic: Dataset) -> None:
    config = RunConfig(dataset="synthetic")

    def epochs() -> list[tuple[float, float, float, float]]:
        torch.manual_seed(0)
        env = HostEnvironment(
            0, synthetic, config.host, config.slot, config.tracker, 3, torch.device("cpu")
        )
        run_epoch = train_alone(env)
        runs = [run_epoch(epoch).signals for epoch in range(1, 4)]
        return [(s.train_loss, s.train_accuracy, s.val_loss, s.val_accuracy) for s in runs]

    assert epochs() == epochs()


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
