"""PPO update statistics: ratios, KL early stop, entropy annealing, NaN/Inf, host syncs.

Every test runs on three update paths: feedforward transitions, recurrent whole episodes,
and recurrent chunks of 2 steps over 3-step episodes (so the last chunk is padded).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from helpers import count_host_reads

from app.rl.ppo import PPOAgent
from app.rl.ppo_config import PPOConfig
from app.rl.ppo_statistics import explained_variance

PATHS = {
    "feedforward": (False, None),
    "recurrent": (True, None),
    "recurrent-chunked": (True, 2),
}


@pytest.fixture(params=PATHS)
def make_agent(request, memory_bandit):
    recurrent, chunk_length = PATHS[request.param]

    def make(**config) -> PPOAgent:
        ppo_config = PPOConfig(chunk_length=chunk_length, **config)
        return PPOAgent(
            memory_bandit.obs_dim, memory_bandit.num_actions, ppo_config, recurrent=recurrent
        )

    return make


def snapshot(agent: PPOAgent) -> dict:
    return copy.deepcopy(agent.state_dict())


def assert_same_tensors(left, right) -> None:
    """Equal nested state (network and optimizer), NaN-aware."""
    if isinstance(left, torch.Tensor):
        assert torch.equal(left.nan_to_num(), right.nan_to_num())
    elif isinstance(left, dict):
        assert left.keys() == right.keys()
        for key in left:
            assert_same_tensors(left[key], right[key])
    else:
        assert left == right


def test_ratio_statistics_on_first_update(make_agent, memory_bandit, collect):
    agent = make_agent(target_kl=None)
    metrics = agent.update(collect(agent, memory_bandit))

    assert metrics.ratio_min <= metrics.ratio_mean <= metrics.ratio_max
    assert metrics.ratio_min <= 1.0 <= metrics.ratio_max
    assert metrics.ratio_max > metrics.ratio_min
    assert metrics.ratio_std > 0.0
    floats = [
        metrics.policy_loss,
        metrics.value_loss,
        metrics.entropy,
        metrics.approx_kl,
        metrics.clip_fraction,
        metrics.ratio_mean,
        metrics.ratio_max,
        metrics.ratio_min,
        metrics.ratio_std,
        metrics.explained_variance,
        metrics.grad_norm,
    ]
    assert all(math.isfinite(value) for value in floats)
    assert 0.0 <= metrics.clip_fraction <= 1.0
    assert metrics.approx_kl >= 0.0
    assert not metrics.has_nan
    assert not metrics.has_inf
    assert metrics.early_stop_epoch is None
    assert metrics.train_steps == 1
    assert metrics.layer_grad_stats is None


def test_kl_early_stop_after_first_epoch(make_agent, memory_bandit, collect):
    agent = make_agent(lr=1e-2, target_kl=1e-6)

    assert agent.update(collect(agent, memory_bandit)).early_stop_epoch == 1


def test_entropy_coef_anneals_linearly_and_respects_floor(make_agent, memory_bandit, collect):
    agent = make_agent(ent_coef=0.1, ent_coef_final=0.0, ent_anneal_updates=4, ent_coef_floor=0.03)
    coefs = [agent.update(collect(agent, memory_bandit)).entropy_coef for _ in range(6)]

    assert coefs == pytest.approx([0.1, 0.075, 0.05, 0.03, 0.03, 0.03])


def test_nan_reward_is_reported_and_every_step_skipped(make_agent, memory_bandit, collect):
    agent = make_agent()
    agent.update(collect(agent, memory_bandit))
    buffer = collect(agent, memory_bandit)
    buffer.rewards[-1, 0] = math.nan  # normalizing advantages spreads it to every minibatch
    before = snapshot(agent)

    metrics = agent.update(buffer)

    assert metrics.has_nan
    assert metrics.train_steps == 2
    after = snapshot(agent)
    assert_same_tensors(before["network"], after["network"])
    assert_same_tensors(before["optimizer"]["state"], after["optimizer"]["state"])


def test_inf_reward_is_reported(make_agent, memory_bandit, collect):
    agent = make_agent()
    buffer = collect(agent, memory_bandit)
    buffer.rewards[-1, 0] = math.inf

    metrics = agent.update(buffer)

    assert metrics.has_inf
    assert all(torch.isfinite(p).all() for p in agent.network.parameters())


def test_nan_observation_skips_only_its_minibatches(make_agent, memory_bandit, collect):
    agent = make_agent(target_kl=None)
    buffer = collect(agent, memory_bandit)
    buffer.obs[1, 0, 0] = math.nan
    before = snapshot(agent)["network"]

    metrics = agent.update(buffer)

    assert metrics.has_nan
    assert not metrics.has_inf
    assert math.isnan(metrics.ratio_max)
    for name, param in agent.network.state_dict().items():
        assert torch.isfinite(param).all(), name
    changed = [not torch.equal(before[k], v) for k, v in agent.network.state_dict().items()]
    assert any(changed)


def test_nan_weight_is_reported_without_poisoning_optimizer(make_agent, memory_bandit, collect):
    agent = make_agent()
    buffer = collect(agent, memory_bandit)
    agent.update(buffer)
    with torch.no_grad():
        next(agent.network.parameters())[0, 0] = math.nan
    before = snapshot(agent)["optimizer"]["state"]

    metrics = agent.update(buffer)

    assert metrics.has_nan
    assert_same_tensors(before, snapshot(agent)["optimizer"]["state"])


@pytest.mark.parametrize("num_minibatches", [1, 8])
def test_update_reads_the_device_once_per_epoch_not_per_minibatch(
    make_agent, memory_bandit, collect, monkeypatch, num_minibatches
):
    # target_kl is never reached, so every epoch but the last checks it: 3 reads, then 1.
    agent = make_agent(num_minibatches=num_minibatches, update_epochs=4, target_kl=1e3)
    buffer = collect(agent, memory_bandit)

    with count_host_reads(monkeypatch) as reads:
        metrics = agent.update(buffer, collect_layer_stats=True)

    assert metrics.early_stop_epoch is None
    assert sorted(reads) == ["item", "item", "item", "tolist"]


def test_layer_grad_stats_only_when_requested(make_agent, memory_bandit, collect):
    agent = make_agent()
    buffer = collect(agent, memory_bandit)

    assert agent.update(buffer).layer_grad_stats is None
    stats = agent.update(buffer, collect_layer_stats=True).layer_grad_stats

    assert stats is not None
    assert list(stats) == [name for name, _ in agent.network.named_parameters()]
    for layer in stats.values():
        assert set(layer) == {"norm", "mean", "std", "max_abs"}
        assert all(math.isfinite(value) for value in layer.values())
        assert layer["norm"] >= 0.0
        assert layer["max_abs"] >= abs(layer["mean"])


def test_explained_variance():
    returns = torch.tensor([1.0, 2.0, 3.0, 4.0])

    assert explained_variance(returns, returns).item() == 1.0
    assert explained_variance(torch.full((4,), 2.5), returns).item() == 0.0
    assert math.isnan(explained_variance(torch.zeros(4), torch.ones(4)).item())
