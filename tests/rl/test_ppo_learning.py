"""PPO learns contextual bandits: feedforward and recurrent, and a recurrent one needs memory."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
import torch

from app.rl.buffer import RolloutBuffer
from app.rl.ppo import PPOAgent, normalized
from app.rl.ppo_config import PPOConfig

MAX_UPDATES = 60
Collect = Callable[[PPOAgent, Any], RolloutBuffer]
Accuracy = Callable[[PPOAgent, Any], float]


def train_until_solved(agent: PPOAgent, env: Any, collect: Collect, accuracy: Accuracy) -> int:
    """Updates until the greedy policy is >= 95% right on fresh contexts and the sampled
    one earned >= 90% of the reward in its last rollout; MAX_UPDATES + 1 if never."""
    for update in range(1, MAX_UPDATES + 1):
        buffer = collect(agent, env)
        sampled_success = buffer.rewards[-1].mean().item()
        agent.update(buffer)
        if sampled_success >= 0.9 and accuracy(agent, env) >= 0.95:
            return update
    return MAX_UPDATES + 1


@pytest.mark.parametrize("recurrent", [False, True], ids=["feedforward", "recurrent"])
def test_learns_plain_bandit(recurrent, plain_bandit, collect, accuracy):
    # Every step is its own bandit problem, so no reward should leak across steps.
    agent = PPOAgent(
        plain_bandit.obs_dim, plain_bandit.num_actions, PPOConfig(gamma=0.0), recurrent=recurrent
    )

    assert train_until_solved(agent, plain_bandit, collect, accuracy) <= MAX_UPDATES


def test_recurrent_learns_bandit_that_needs_memory(memory_bandit, collect, accuracy):
    agent = PPOAgent(memory_bandit.obs_dim, memory_bandit.num_actions, PPOConfig(), recurrent=True)

    assert train_until_solved(agent, memory_bandit, collect, accuracy) <= MAX_UPDATES


def test_feedforward_cannot_solve_memory_bandit(memory_bandit, collect, accuracy):
    """The memory bandit really needs memory: without it the answer is a guess."""
    agent = PPOAgent(memory_bandit.obs_dim, memory_bandit.num_actions, PPOConfig(), recurrent=False)
    for _ in range(20):
        agent.update(collect(agent, memory_bandit))

    assert accuracy(agent, memory_bandit) < 0.5


def test_checkpoint_round_trip_resumes_identically(plain_bandit, collect):
    config = PPOConfig(gamma=0.0)
    agent = PPOAgent(plain_bandit.obs_dim, plain_bandit.num_actions, config)
    agent.update(collect(agent, plain_bandit))
    checkpoint = io.BytesIO()
    torch.save(agent.state_dict(), checkpoint)
    checkpoint.seek(0)
    restored = PPOAgent(plain_bandit.obs_dim, plain_bandit.num_actions, config)
    restored.load_state_dict(torch.load(checkpoint))
    buffer = collect(agent, plain_bandit)

    rng_state = torch.get_rng_state()
    first = agent.update(buffer)
    torch.set_rng_state(rng_state)
    second = restored.update(buffer)

    assert restored.train_steps == agent.train_steps == 2
    assert first == second


def test_advantages_are_normalized_over_the_whole_update() -> None:
    advantages = torch.tensor([[0.01, 0.03], [-0.02, 0.06], [0.0, 0.02]])
    every_step = torch.ones(3, 2, dtype=torch.bool)
    result = normalized(advantages, every_step)
    assert result.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert result.std().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(result.flatten().argsort(), advantages.flatten().argsort())
    assert torch.equal(normalized(torch.full((3, 2), 0.5), every_step), torch.zeros(3, 2))


def test_advantages_are_scaled_by_the_steps_with_a_choice() -> None:
    # Forced steps (one valid action) carry the critic's error on returns it cannot
    # foresee; the decisions alone set the mean and the scale.
    advantages = torch.tensor([[5.0, 5.0], [0.1, -0.1], [0.3, -0.3]])
    decided = torch.tensor([[False, False], [True, True], [True, True]])
    result = normalized(advantages, decided)
    assert result[decided].mean().item() == pytest.approx(0.0, abs=1e-6)
    assert result[decided].std().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.all(result[decided].abs() < 2.0)
    # Without a choice anywhere, every step counts.
    nothing = torch.zeros(3, 2, dtype=torch.bool)
    assert normalized(advantages, nothing).mean().item() == pytest.approx(0.0, abs=1e-6)
