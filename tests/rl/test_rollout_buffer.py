"""Rollout buffer: GAE, advantage normalization, and cutting episodes into chunks."""

from __future__ import annotations

import pytest
import torch

from app.rl.buffer import RolloutBuffer, compute_gae


def test_gae_by_hand():
    # Two environments: the first ends at the last step, the second after its second step.
    rewards = torch.tensor([[1.0, 1.0], [0.0, 0.0], [2.0, 2.0]])
    values = torch.full((3, 2), 0.5)
    dones = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]])

    advantages, returns = compute_gae(rewards, values, dones, gamma=0.9, gae_lambda=0.8)

    expected = torch.tensor([[1.6916, 0.59], [1.03, -0.5], [1.5, 1.5]])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected + values)


def filled_buffer(num_envs: int = 2, num_steps: int = 3, hidden_size: int | None = 4):
    buffer = RolloutBuffer(num_envs, num_steps, obs_dim=2, num_actions=3, hidden_size=hidden_size)
    for t in range(num_steps):
        step = torch.arange(num_envs, dtype=torch.float32) + 10 * t  # env n at step t: 10t + n
        hidden = None
        if hidden_size is not None:
            state = step[None, :, None].expand(1, num_envs, hidden_size)
            hidden = (state, -state)
        buffer.add(
            obs=step[:, None].expand(num_envs, 2),
            masks=torch.ones(num_envs, 3, dtype=torch.bool),
            actions=torch.zeros(num_envs, dtype=torch.long),
            logprobs=torch.zeros(num_envs),
            values=torch.zeros(num_envs),
            rewards=step,
            dones=torch.full((num_envs,), float(t == num_steps - 1)),
            hidden=hidden,
        )
    return buffer


def test_advantages_normalized_once_over_the_buffer():
    advantages, returns = filled_buffer().advantages_and_returns(gamma=0.99, gae_lambda=0.95)

    assert advantages.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert advantages.std(correction=0).item() == pytest.approx(1.0, abs=1e-5)
    assert returns[-1].tolist() == [20.0, 21.0]  # the last rewards, unnormalized


def test_sequences_cut_episodes_into_padded_chunks_with_stored_states():
    buffer = filled_buffer(num_envs=2, num_steps=3)
    advantages, returns = buffer.advantages_and_returns(gamma=0.99, gae_lambda=0.95)

    batch = buffer.sequences(2, advantages, returns)

    # Chunk n * 2 + k holds steps 2k, 2k + 1 of env n; the last one of each env is padded.
    assert batch.obs[..., 0].tolist() == [[0.0, 10.0], [20.0, 0.0], [1.0, 11.0], [21.0, 0.0]]
    assert batch.valid.tolist() == [[True, True], [True, False]] * 2
    assert batch.returns[:, 0].tolist() == returns.T[:, ::2].flatten().tolist()
    assert batch.hidden is not None
    assert batch.hidden[0][0, :, 0].tolist() == [0.0, 20.0, 1.0, 21.0]
    assert batch.hidden[1][0, :, 0].tolist() == [0.0, -20.0, -1.0, -21.0]
    selected = batch.select(torch.tensor([3, 0]))
    assert selected.hidden is not None
    assert selected.hidden[0][0, :, 0].tolist() == [21.0, 0.0]


def test_feedforward_sequences_are_single_transitions():
    buffer = filled_buffer(hidden_size=None)
    batch = buffer.sequences(1, *buffer.advantages_and_returns(gamma=0.99, gae_lambda=0.95))

    assert batch.obs.shape == (6, 1, 2)
    assert batch.hidden is None
    assert bool(batch.valid.all())


def test_buffer_rejects_misuse():
    buffer = filled_buffer()
    with pytest.raises(ValueError, match="full"):
        buffer.add(*[None] * 7)
    buffer.reset()
    with pytest.raises(ValueError, match="holds 0 of 3 steps"):
        buffer.advantages_and_returns(gamma=0.99, gae_lambda=0.95)
    with pytest.raises(ValueError, match="hidden"):
        buffer.add(*[torch.zeros(2)] * 7)


@pytest.mark.parametrize("hidden_size", [None, 3])
def test_joined_buffers_are_the_buffer_one_process_fills(hidden_size: int | None) -> None:
    """Rollouts stepped in two processes, joined on rank 0, give the update the very
    tensors, advantages and returns one process would."""
    steps, obs_dim, actions = 4, 5, 3
    whole = RolloutBuffer(4, steps, obs_dim, actions, hidden_size=hidden_size)
    parts = [RolloutBuffer(n, steps, obs_dim, actions, hidden_size=hidden_size) for n in (3, 1)]
    for _ in range(steps):
        step = [
            torch.randn(4, obs_dim),
            torch.rand(4, actions) > 0.3,
            torch.randint(actions, (4,)),
            torch.randn(4),
            torch.randn(4),
            torch.randn(4),
            (torch.rand(4) > 0.8).float(),
        ]
        hidden = None
        if hidden_size is not None:
            hidden = (torch.randn(1, 4, hidden_size), torch.randn(1, 4, hidden_size))
        whole.add(*step, hidden)
        for part, rows in zip(parts, (slice(0, 3), slice(3, 4)), strict=True):
            part_hidden = None if hidden is None else (hidden[0][:, rows], hidden[1][:, rows])
            part.add(*(tensor[rows] for tensor in step), part_hidden)
    joined = RolloutBuffer.joined(parts, torch.device("cpu"))
    for name in ("obs", "masks", "actions", "logprobs", "values", "rewards", "dones"):
        assert torch.equal(getattr(joined, name), getattr(whole, name)), name
    if hidden_size is not None:
        assert joined.hidden_states is not None and whole.hidden_states is not None
        for mine, theirs in zip(joined.hidden_states, whole.hidden_states, strict=True):
            assert torch.equal(mine, theirs)
    for mine, theirs in zip(
        joined.advantages_and_returns(0.99, 0.95),
        whole.advantages_and_returns(0.99, 0.95),
        strict=True,
    ):
        assert torch.equal(mine, theirs)
