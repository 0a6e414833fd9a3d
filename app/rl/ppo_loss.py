"""The clipped PPO loss of one minibatch: policy surrogate, value error and entropy."""

from __future__ import annotations

from typing import NamedTuple

import torch

from app.rl.buffer import SequenceBatch
from app.rl.networks import ActorCriticBase, PolicyOutput, action_log_probs, policy_entropy
from app.rl.ppo_config import PPOConfig


class Losses(NamedTuple):
    """One minibatch's loss and its parts, as device tensors; `ratio` is per step."""

    total: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor
    approx_kl: torch.Tensor
    clip_fraction: torch.Tensor
    ratio: torch.Tensor


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over the valid steps; where() rather than a product keeps padding's NaN out."""
    return torch.where(valid, values, 0.0).sum() / valid.sum()


def ppo_losses(
    network: ActorCriticBase, minibatch: SequenceBatch, config: PPOConfig, entropy_coef: float
) -> Losses:
    """The loss to minimize for `minibatch`, with what it is made of."""
    valid = minibatch.valid
    output: PolicyOutput = network(minibatch.obs, minibatch.masks, minibatch.hidden)
    logratio = action_log_probs(output.logits, minibatch.actions) - minibatch.logprobs
    ratio = logratio.exp()
    advantages = minibatch.advantages
    clipped_ratio = ratio.clamp(1.0 - config.clip_coef, 1.0 + config.clip_coef)
    surrogate = torch.maximum(-advantages * ratio, -advantages * clipped_ratio)
    policy_loss = masked_mean(surrogate, valid)
    value_loss = 0.5 * masked_mean(_value_errors(output.values, minibatch, config), valid)
    mean_entropy = masked_mean(policy_entropy(output.logits), valid)
    with torch.no_grad():
        approx_kl = masked_mean((ratio - 1.0) - logratio, valid)
        clip_fraction = masked_mean(((ratio - 1.0).abs() > config.clip_coef).float(), valid)
    total = policy_loss - entropy_coef * mean_entropy + config.vf_coef * value_loss
    return Losses(total, policy_loss, value_loss, mean_entropy, approx_kl, clip_fraction, ratio)


def _value_errors(
    values: torch.Tensor, minibatch: SequenceBatch, config: PPOConfig
) -> torch.Tensor:
    """Squared value errors, pessimistic over the clipped and unclipped value (CleanRL)."""
    errors = (values - minibatch.returns) ** 2
    if not config.clip_value:
        return errors
    clip = config.value_clip_coef
    clipped = minibatch.values + (values - minibatch.values).clamp(-clip, clip)
    return torch.maximum(errors, (clipped - minibatch.returns) ** 2)
