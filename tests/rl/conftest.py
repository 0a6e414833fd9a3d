"""Contextual bandits for the PPO tests, and a helper that fills a rollout buffer."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from app.rl.buffer import RolloutBuffer
from app.rl.ppo import PPOAgent

NUM_CONTEXTS = 4
WAIT = NUM_CONTEXTS  # the extra action: masked at decision steps, the only one allowed otherwise
NUM_ACTIONS = NUM_CONTEXTS + 1
OPTIMAL_ACTION = torch.tensor([2, 0, 3, 1])


class Bandit:
    """N parallel episodes of `episode_length` steps over 4 contexts and 5 actions.

    Plain: every step shows a fresh context (one-hot plus noise) and pays 1 for its optimal
    action; WAIT is always masked. Memory: the context is shown only at step 0, WAIT is the
    only valid action until the last step, where WAIT is masked and the answer pays 1 if it
    is the optimal action of the context seen at step 0, so the policy must remember it.
    """

    num_actions = NUM_ACTIONS

    def __init__(self, num_envs: int, episode_length: int, memory: bool, seed: int) -> None:
        self.num_envs = num_envs
        self.episode_length = episode_length
        self.memory = memory
        self.generator = torch.Generator().manual_seed(seed)
        self.contexts = torch.zeros(num_envs, dtype=torch.long)

    @property
    def obs_dim(self) -> int:
        return NUM_CONTEXTS + (self.episode_length if self.memory else 0)

    def observe(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Observation and action mask for step t (a new context at t == 0, or every step)."""
        if t == 0 or not self.memory:
            self.contexts = torch.randint(NUM_CONTEXTS, (self.num_envs,), generator=self.generator)
        context = torch.nn.functional.one_hot(self.contexts, NUM_CONTEXTS).float()
        if self.memory and t > 0:
            context.zero_()
        noise = 0.1 * torch.randn(context.shape, generator=self.generator)
        obs = [context + noise]
        if self.memory:
            step = torch.full((self.num_envs,), t)
            obs.append(torch.nn.functional.one_hot(step, self.episode_length).float())
        masks = torch.ones(self.num_envs, NUM_ACTIONS, dtype=torch.bool)
        if self.is_decision(t):
            masks[:, WAIT] = False
        else:
            masks[:, :WAIT] = False
        return torch.cat(obs, dim=1), masks

    def is_decision(self, t: int) -> bool:
        return not self.memory or t == self.episode_length - 1

    def reward(self, t: int, actions: torch.Tensor) -> torch.Tensor:
        if not self.is_decision(t):
            return torch.zeros(self.num_envs)
        return (actions == OPTIMAL_ACTION[self.contexts]).float()


def collect_rollout(agent: PPOAgent, env: Bandit) -> RolloutBuffer:
    """One episode of every environment, acted stochastically, stored for an update."""
    buffer = agent.new_buffer(env.num_envs, env.episode_length)
    hidden = agent.initial_hidden(env.num_envs)
    for t in range(env.episode_length):
        obs, masks = env.observe(t)
        result = agent.act(obs, masks, hidden)
        rewards = env.reward(t, result.actions)
        dones = torch.full((env.num_envs,), float(t == env.episode_length - 1))
        buffer.add(
            obs, masks, result.actions, result.logprobs, result.values, rewards, dones, hidden
        )
        hidden = result.hidden
    return buffer


def greedy_accuracy(agent: PPOAgent, env: Bandit) -> float:
    """Fraction of decisions the deterministic policy gets right over fresh episodes."""
    hidden = agent.initial_hidden(env.num_envs)
    correct, decisions = 0.0, 0
    for t in range(env.episode_length):
        obs, masks = env.observe(t)
        result = agent.act(obs, masks, hidden, deterministic=True)
        hidden = result.hidden
        if env.is_decision(t):
            correct += env.reward(t, result.actions).sum().item()
            decisions += env.num_envs
    return correct / decisions


@pytest.fixture(autouse=True)
def _deterministic_torch() -> Iterator[None]:
    """Seed torch's global RNG (agents initialize and sample from it) and use one thread.

    The networks are tiny: extra intra-op threads only contend for a small machine's cores,
    which made these tests up to ten times slower under load.
    """
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def plain_bandit() -> Bandit:
    return Bandit(num_envs=32, episode_length=4, memory=False, seed=1)


@pytest.fixture
def memory_bandit() -> Bandit:
    return Bandit(num_envs=32, episode_length=3, memory=True, seed=2)


@pytest.fixture
def collect() -> Callable[[PPOAgent, Bandit], RolloutBuffer]:
    return collect_rollout


@pytest.fixture
def accuracy() -> Callable[[PPOAgent, Bandit], float]:
    return greedy_accuracy
