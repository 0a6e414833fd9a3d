"""Fixtures for the training-loop tests: a small, fast run on the synthetic dataset whose
seeds germinate and move through their stages within a few epochs."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import torch

from app.control.tracker import TrackerConfig
from app.model.slot import SlotConfig
from app.training.config import RunConfig
from app.training.datasets import Dataset, load_dataset


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These networks are tiny: one intra-op thread is faster and keeps runs deterministic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Short stages: a seed germinated at epoch 3 can be PROBATIONARY by epoch 7.
FAST_SLOT = SlotConfig(
    training_epochs=1,
    blending_epochs=2,
    shadowing_epochs=1,
    probation_max_epochs=2,
    embargo_epochs=1,
)
# On synthetic data the host stabilizes (and TAMIYO_INITIATED fires) around epoch 3.
FAST_TRACKER = TrackerConfig(stabilization_epochs=2)


@pytest.fixture(scope="session")
def synthetic() -> Dataset:
    return load_dataset("synthetic", seed=0)


@pytest.fixture
def fast_config() -> RunConfig:
    """Two PPO environments, two batches of two episodes, eight epochs each."""
    return RunConfig(
        controller="ppo",
        envs=2,
        episodes=4,
        max_epochs=8,
        dataset="synthetic",
        seed=0,
        slot=FAST_SLOT,
        tracker=FAST_TRACKER,
    )


@pytest.fixture
def make_config(fast_config: RunConfig) -> Callable[..., RunConfig]:
    """`fast_config` with some fields replaced."""

    def make(**changes: Any) -> RunConfig:
        return replace(fast_config, **changes)

    return make


# Checkpoint tests: the smallest PPO run whose state has every field a checkpoint holds.
CHECKPOINT_CONFIG = RunConfig(
    controller="ppo", envs=2, episodes=4, max_epochs=3, dataset="synthetic", seed=0
)


@pytest.fixture
def checkpoint_config() -> RunConfig:
    return CHECKPOINT_CONFIG


@pytest.fixture(scope="session")
def _one_batch_state(synthetic: Dataset) -> dict[str, Any]:
    from app.training.vectorized import VectorizedTrainer

    trainer = VectorizedTrainer(CHECKPOINT_CONFIG, synthetic)
    trainer.run_batch()
    return trainer.state_dict()


@pytest.fixture
def state(_one_batch_state: dict[str, Any]) -> dict[str, Any]:
    """A real trainer's state after one batch of two episodes (CHECKPOINT_CONFIG), a copy
    each test may change."""
    return copy.deepcopy(_one_batch_state)
