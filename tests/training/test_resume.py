"""A checkpoint's fields are checked before a run continues from them: each bad field is
one line naming it, and nothing of the checkpoint is applied."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from app.training.checkpoint import CheckpointError
from app.training.config import RunConfig
from app.training.datasets import Dataset
from app.training.progress import HISTORY_LENGTH
from app.training.resume import check_resumable, read_state
from app.training.vectorized import VectorizedTrainer

State = dict[str, Any]


def changed(key: str, value: Any) -> Callable[[State], None]:
    def change(state: State) -> None:
        state[key] = value

    return change


def removed(key: str) -> Callable[[State], None]:
    def change(state: State) -> None:
        del state[key]

    return change


def agent_changed(change: Callable[[State], None]) -> Callable[[State], None]:
    def on_agent(state: State) -> None:
        change(state["agent"])

    return on_agent


def first_weight(change: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[State], None]:
    def on_network(state: State) -> None:
        change(state["agent"]["network"])

    return on_network


def _reshape_first(network: dict[str, torch.Tensor]) -> None:
    name = next(iter(network))
    network[name] = torch.zeros(3, 3)


def _rename_first(network: dict[str, torch.Tensor]) -> None:
    name = next(iter(network))
    network["stray." + name] = network.pop(name)


BAD_FIELDS = [
    pytest.param(changed("batches_completed", -1), "batches_completed is -1", id="batches-neg"),
    pytest.param(changed("batches_completed", "1"), "batches_completed is '1'", id="batches-str"),
    pytest.param(changed("batches_completed", True), "batches_completed is True", id="bool"),
    pytest.param(removed("episodes_completed"), "episodes_completed is missing", id="no-episodes"),
    pytest.param(
        changed("episodes_completed", 7),
        "episodes_completed is 7, but 1 batches of 2 environments complete 1 to 2 episodes",
        id="episodes-beyond-batches",
    ),
    pytest.param(
        changed("batches_completed", 5),
        "episodes_completed is 2, but 5 batches of 2 environments complete 9 to 10 episodes",
        id="batches-beyond-episodes",
    ),
    pytest.param(changed("accuracies", [math.nan]), "accuracies[0] is nan", id="accuracy-nan"),
    pytest.param(changed("accuracies", [250.0]), "accuracies[0] is 250.0", id="accuracy-250"),
    pytest.param(changed("rewards", [math.inf]), "rewards[0] is inf", id="reward-inf"),
    pytest.param(changed("rewards", ["x"]), "rewards[0] is 'x'", id="reward-str"),
    pytest.param(
        changed("accuracies", [50.0] * (HISTORY_LENGTH + 1)),
        f"accuracies has {HISTORY_LENGTH + 1} items, this run needs 1",
        id="history-too-long",
    ),
    pytest.param(changed("rewards", 0.5), "rewards is a float, not a list", id="rewards-float"),
    pytest.param(
        changed("torch_rng", torch.zeros(10, dtype=torch.uint8)),
        "torch_rng is a torch.uint8 tensor of shape [10]",
        id="rng-shape",
    ),
    pytest.param(
        changed("torch_rng", torch.zeros(5056, dtype=torch.float32)),
        "torch_rng is a torch.float32 tensor",
        id="rng-dtype",
    ),
    pytest.param(changed("torch_rng", [1, 2]), "torch_rng is a list, not a random", id="rng-list"),
    pytest.param(
        changed("env_rng", [torch.get_rng_state()]),
        "env_rng has 1 items, this run needs 2",
        id="data-rng-count",
    ),
    pytest.param(changed("seeds_grown", [0, -3]), "seeds_grown[1] is -3", id="seeds-negative"),
    pytest.param(
        changed("escalation_remaining", 1.5), "escalation_remaining is 1.5", id="escalation"
    ),
    pytest.param(changed("envs", 3), "written with envs=3, this run has envs=2", id="setup"),
]


@pytest.mark.parametrize(("change", "complaint"), BAD_FIELDS)
def test_a_bad_progress_field_is_named_and_nothing_is_applied(
    checkpoint_config: RunConfig,
    synthetic: Dataset,
    state: State,
    change: Callable[[State], None],
    complaint: str,
) -> None:
    change(state)
    trainer = VectorizedTrainer(checkpoint_config, synthetic)
    rng = torch.get_rng_state()
    with pytest.raises(CheckpointError) as caught:
        trainer.load_state_dict(state)
    assert str(caught.value).startswith(complaint), str(caught.value)
    assert "\n" not in str(caught.value)
    assert trainer.progress.batches_completed == trainer.progress.episodes_completed == 0
    assert trainer.agent is not None and trainer.agent.train_steps == 0
    assert torch.equal(torch.get_rng_state(), rng)


BAD_AGENTS = [
    pytest.param(
        agent_changed(lambda agent: agent.pop("network")),
        "agent state is missing 'network'",
        id="no-network",
    ),
    pytest.param(
        agent_changed(lambda agent: agent.pop("optimizer")),
        "agent state is missing 'optimizer'",
        id="no-optimizer",
    ),
    pytest.param(changed("agent", None), "agent state is missing, not a dict", id="no-agent"),
    pytest.param(
        agent_changed(lambda agent: agent.update(train_steps=-2)),
        "agent train_steps is -2",
        id="train-steps",
    ),
    pytest.param(first_weight(_reshape_first), "agent network '", id="shape"),
    pytest.param(first_weight(_rename_first), "agent network is missing '", id="renamed"),
    pytest.param(
        agent_changed(lambda agent: agent.update(optimizer={"state": {}})),
        "agent optimizer state lacks 'state' or 'param_groups'",
        id="optimizer",
    ),
]


@pytest.mark.parametrize(("change", "complaint"), BAD_AGENTS)
def test_a_bad_agent_state_says_what_does_not_fit(
    checkpoint_config: RunConfig,
    synthetic: Dataset,
    state: State,
    change: Callable[[State], None],
    complaint: str,
) -> None:
    change(state)
    trainer = VectorizedTrainer(checkpoint_config, synthetic)
    with pytest.raises(CheckpointError) as caught:
        trainer.load_state_dict(state)
    assert str(caught.value).startswith(complaint), str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_sound_state_reads_back_as_written(state: State) -> None:
    saved = read_state(state, envs=2)
    assert (saved.batches_completed, saved.episodes_completed) == (1, 2)
    assert saved.accuracies == state["accuracies"] and len(saved.env_rng) == 2


def test_a_short_last_batch_is_a_sound_episode_count(state: State) -> None:
    # Three episodes over two environments: a full batch, then one episode.
    state.update(batches_completed=2, episodes_completed=3)
    state["accuracies"] = state["rewards"] = [50.0, 50.0]
    assert read_state(state, envs=2).episodes_completed == 3


def test_resumable_names_the_checkpoint_and_what_is_left(
    checkpoint_config: RunConfig, state: State
) -> None:
    path = Path("runs/ck.pt")
    check_resumable(path, state, checkpoint_config)  # 2 of 4 episodes done: fine
    state["episodes_completed"] = -1
    with pytest.raises(CheckpointError) as caught:
        check_resumable(path, state, checkpoint_config)
    assert str(caught.value).startswith(f"checkpoint {path}: episodes_completed is -1")

    state.update(batches_completed=2, episodes_completed=4)
    state["accuracies"] = state["rewards"] = [50.0, 50.0]
    with pytest.raises(CheckpointError) as caught:
        check_resumable(path, state, checkpoint_config)
    assert str(caught.value) == (
        f"checkpoint {path} has completed 4 of 4 episodes; nothing left to run "
        "(raise --episodes to continue)"
    )
