"""The untrained policy follows the configured action prior, for both networks."""

from __future__ import annotations

import math

import pytest
import torch

from app.rl.ppo import PPOAgent
from app.rl.ppo_config import PPOConfig


@pytest.mark.parametrize("recurrent", [False, True], ids=["feedforward", "recurrent"])
def test_untrained_policy_prefers_the_prior_action(recurrent: bool) -> None:
    agent = PPOAgent(6, 4, PPOConfig(action_prior=(2.0, 0.0, 0.0, 0.0)), recurrent=recurrent)
    obs = torch.randn(256, 6)
    masks = torch.tensor([[True, True, False, True]] * 256)
    output = agent.network(obs.unsqueeze(1), masks.unsqueeze(1), agent.initial_hidden(256))
    probabilities = output.logits.squeeze(1).softmax(-1)
    expected_first = math.exp(2.0) / (math.exp(2.0) + 2)
    assert probabilities[:, 0].mean().item() == pytest.approx(expected_first, abs=0.02)
    assert probabilities[:, 2].max().item() < 1e-6


def test_a_prior_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="action_prior has 2 logits for 4 actions"):
        PPOAgent(6, 4, PPOConfig(action_prior=(1.0, 0.0)))
