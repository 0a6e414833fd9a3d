"""Rollout storage for N environments stepped in lockstep for one episode of T steps.

Tensors are stored time-major, (T, N, ...), as they arrive; `sequences` hands them to the
update batch-first, cut into per-environment chunks (length 1 for a feedforward network).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from app.rl.networks import Hidden, LSTMState
from app.settings import check


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimates and returns, each (T, N), computed per environment.

    `dones[t]` marks the last step of an episode; the episode also ends after the final
    stored step. Both bootstrap with value 0: an episode here is a finished training run.
    """
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(values[0])
    next_advantage = torch.zeros_like(values[0])
    for t in reversed(range(rewards.shape[0])):
        nonterminal = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * nonterminal - values[t]
        next_advantage = delta + gamma * gae_lambda * nonterminal * next_advantage
        advantages[t] = next_advantage
        next_value = values[t]
    return advantages, advantages + values


def _chunk_starts(state: torch.Tensor, chunk_length: int) -> torch.Tensor:
    """A stored (T, N, hidden) state at each chunk's first step, as (1, N * chunks, hidden)."""
    starts = state[::chunk_length].transpose(0, 1)
    return starts.reshape(1, -1, state.shape[-1])


@dataclass(frozen=True)
class SequenceBatch:
    """Chunks of consecutive steps of one environment, batch-first: (chunks, length, ...).

    `valid` is False on the padding that fills an environment's last chunk when the episode
    length is not a multiple of the chunk length. `hidden` is the stored recurrent state at
    the start of each chunk, (1, chunks, hidden) each, or None for a feedforward network.
    """

    obs: torch.Tensor
    masks: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    valid: torch.Tensor
    hidden: Hidden

    @property
    def num_sequences(self) -> int:
        return self.obs.shape[0]

    def select(self, index: torch.Tensor) -> SequenceBatch:
        """The chunks at `index`, with their recurrent states."""
        hidden = (
            None if self.hidden is None else (self.hidden[0][:, index], self.hidden[1][:, index])
        )
        return SequenceBatch(
            obs=self.obs[index],
            masks=self.masks[index],
            actions=self.actions[index],
            logprobs=self.logprobs[index],
            values=self.values[index],
            advantages=self.advantages[index],
            returns=self.returns[index],
            valid=self.valid[index],
            hidden=hidden,
        )


class RolloutBuffer:
    """One episode of `num_steps` steps for each of `num_envs` environments.

    Pass `hidden_size` for a recurrent policy: the buffer then also keeps the LSTM state the
    policy acted from at every step, so an update can start any chunk from its stored state.
    """

    def __init__(
        self,
        num_envs: int,
        num_steps: int,
        obs_dim: int,
        num_actions: int,
        hidden_size: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.num_envs = num_envs
        self.num_steps = num_steps
        check(self, "num_envs", "num_steps", ge=1)
        shape = (num_steps, num_envs)
        self.obs = torch.zeros((*shape, obs_dim), device=device)
        self.masks = torch.zeros((*shape, num_actions), dtype=torch.bool, device=device)
        self.actions = torch.zeros(shape, dtype=torch.long, device=device)
        self.logprobs = torch.zeros(shape, device=device)
        self.values = torch.zeros(shape, device=device)
        self.rewards = torch.zeros(shape, device=device)
        self.dones = torch.zeros(shape, device=device)
        self.hidden_states: LSTMState | None = None
        if hidden_size is not None:
            state = torch.zeros((*shape, hidden_size), device=device)
            self.hidden_states = (state, state.clone())
        self.step = 0

    @classmethod
    def joined(cls, parts: Sequence[RolloutBuffer], device: torch.device) -> RolloutBuffer:
        """One buffer holding the parts' environments side by side, in order: a batch's
        rollouts stepped in several processes, as one process would have stored them."""
        if len(parts) == 1 and parts[0].obs.device == device:
            return parts[0]
        first = parts[0]
        hidden = first.hidden_states
        joined = cls(
            sum(part.num_envs for part in parts),
            first.num_steps,
            first.obs.shape[-1],
            first.masks.shape[-1],
            hidden_size=None if hidden is None else hidden[0].shape[-1],
            device=device,
        )
        for name in ("obs", "masks", "actions", "logprobs", "values", "rewards", "dones"):
            setattr(joined, name, torch.cat([getattr(p, name).to(device) for p in parts], 1))
        if hidden is not None:
            states = [part.hidden_states for part in parts if part.hidden_states is not None]
            joined.hidden_states = (
                torch.cat([state[0].to(device) for state in states], 1),
                torch.cat([state[1].to(device) for state in states], 1),
            )
        joined.step = first.step
        return joined

    def to(self, device: torch.device) -> RolloutBuffer:
        """The buffer on `device` (itself when it is there already)."""
        return RolloutBuffer.joined([self], device)

    @property
    def full(self) -> bool:
        return self.step == self.num_steps

    def reset(self) -> None:
        """Start a new episode; the stored tensors are overwritten as steps arrive."""
        self.step = 0

    def add(
        self,
        obs: torch.Tensor,
        masks: torch.Tensor,
        actions: torch.Tensor,
        logprobs: torch.Tensor,
        values: torch.Tensor,
        rewards: torch.Tensor,
        dones: torch.Tensor,
        hidden: Hidden = None,
    ) -> None:
        """Store one step of every environment; `hidden` is the state the policy acted from."""
        if self.full:
            raise ValueError(f"buffer is full ({self.num_steps} steps); call reset() first")
        if (hidden is None) != (self.hidden_states is None):
            raise ValueError("pass hidden exactly when the buffer was built with hidden_size")
        t = self.step
        self.obs[t] = obs
        self.masks[t] = masks
        self.actions[t] = actions
        self.logprobs[t] = logprobs
        self.values[t] = values
        self.rewards[t] = rewards
        self.dones[t] = dones.to(self.dones.dtype)
        if hidden is not None and self.hidden_states is not None:
            self.hidden_states[0][t] = hidden[0][0]
            self.hidden_states[1][t] = hidden[1][0]
        self.step += 1

    def advantages_and_returns(
        self, gamma: float, gae_lambda: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE advantages normalized once over the whole buffer, and unnormalized returns.

        Normalizing here rather than per minibatch keeps every minibatch on the same scale.
        """
        if not self.full:
            raise ValueError(f"buffer holds {self.step} of {self.num_steps} steps")
        advantages, returns = compute_gae(self.rewards, self.values, self.dones, gamma, gae_lambda)
        normalized = (advantages - advantages.mean()) / (advantages.std(correction=0) + 1e-8)
        return normalized, returns

    def sequences(
        self, chunk_length: int, advantages: torch.Tensor, returns: torch.Tensor
    ) -> SequenceBatch:
        """Each environment's episode cut into chunks of `chunk_length` steps, batch-first."""
        num_chunks = math.ceil(self.num_steps / chunk_length)
        padding = num_chunks * chunk_length - self.num_steps

        def chunk(tensor: torch.Tensor) -> torch.Tensor:
            batch_first = tensor.transpose(0, 1)
            pad = batch_first.new_zeros((self.num_envs, padding, *batch_first.shape[2:]))
            padded = torch.cat([batch_first, pad], dim=1)
            return padded.reshape(self.num_envs * num_chunks, chunk_length, *padded.shape[2:])

        hidden: Hidden = None
        if self.hidden_states is not None:
            h, c = self.hidden_states
            hidden = (_chunk_starts(h, chunk_length), _chunk_starts(c, chunk_length))
        return SequenceBatch(
            obs=chunk(self.obs),
            masks=chunk(self.masks),
            actions=chunk(self.actions),
            logprobs=chunk(self.logprobs),
            values=chunk(self.values),
            advantages=chunk(advantages),
            returns=chunk(returns),
            valid=chunk(torch.ones_like(self.dones, dtype=torch.bool)),
            hidden=hidden,
        )
