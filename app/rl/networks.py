"""Actor-critic networks with action masking, feedforward and recurrent (LSTM).

Both take batch-first sequences, `obs` (batch, seq, obs_dim) and `masks` (batch, seq,
num_actions), and return masked logits, values and the next recurrent state, so the PPO code
treats them alike: a feedforward update is a recurrent one over sequences of length 1.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

LSTMState = tuple[torch.Tensor, torch.Tensor]
# The recurrent state carried between steps: (h, c) of shape (1, batch, hidden), or None.
Hidden = LSTMState | None

# The value head starts near 0, the scale of the returns (fractions of accuracy): CleanRL's
# std of 1 suits returns near 1, and here would leave the critic's first estimates tens of
# times the returns, with value clipping letting each update recover only part of that.
VALUE_INIT_STD = 0.01


class PolicyOutput(NamedTuple):
    logits: torch.Tensor
    values: torch.Tensor
    hidden: Hidden


def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights and constant bias, as in CleanRL's PPO."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


def mask_logits(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Push invalid actions' logits to the lowest finite value.

    -inf would give the invalid actions zero probability too, but makes the entropy
    (0 * -inf) NaN; the finite minimum keeps it exact and finite.
    """
    return logits.masked_fill(~masks, torch.finfo(logits.dtype).min)


# The three helpers below compute what torch.distributions.Categorical does, typed, and
# without its argument validation, which would sync the host on every call.


def action_log_probs(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Log-probability of each taken action under the (masked) logits."""
    log_probs = logits.log_softmax(-1)
    return log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def policy_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical over the last dimension; masked actions contribute 0."""
    log_probs = logits.log_softmax(-1)
    return -(log_probs.exp() * log_probs).sum(-1)


def sample_actions(logits: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """One action per row of (batch, num_actions) logits, drawn with `uniform`, noise of
    the same shape in [0, 1).

    Gumbel-max: the argmax of the logits plus Gumbel noise is a draw from their softmax.
    Taking the noise as an argument lets each environment draw its own, so that its
    actions do not depend on the other environments sampled beside it.
    """
    return (logits - torch.log(-torch.log(uniform))).argmax(-1)


class ActorCriticBase(nn.Module, ABC):
    """The interface PPO relies on; see the module docstring for the shapes."""

    @abstractmethod
    def forward(self, obs: torch.Tensor, masks: torch.Tensor, hidden: Hidden) -> PolicyOutput:
        """Masked logits (batch, seq, num_actions), values (batch, seq), next state."""

    @abstractmethod
    def initial_hidden(self, batch_size: int) -> Hidden:
        """The recurrent state at the start of an episode."""

    @property
    def hidden_size(self) -> int | None:
        """Width of one recurrent state vector, None for a feedforward network."""
        return None

    @property
    @abstractmethod
    def policy_layer(self) -> nn.Linear:
        """The policy's last layer; its bias is the prior over actions before learning."""

    def set_action_prior(self, logits: Sequence[float]) -> None:
        """Start the policy from these logits (before masking) instead of uniform."""
        with torch.no_grad():
            self.policy_layer.bias.copy_(torch.as_tensor(logits, dtype=torch.float32))


class ActorCritic(ActorCriticBase):
    """Separate tanh MLPs for the policy and the value, as in CleanRL's PPO."""

    def __init__(self, obs_dim: int, num_actions: int, hidden: int = 64) -> None:
        super().__init__()
        self.actor = nn.Sequential(
            layer_init(nn.Linear(obs_dim, hidden)),
            nn.Tanh(),
            layer_init(nn.Linear(hidden, hidden)),
            nn.Tanh(),
            layer_init(nn.Linear(hidden, num_actions), std=0.01),
        )
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, hidden)),
            nn.Tanh(),
            layer_init(nn.Linear(hidden, hidden)),
            nn.Tanh(),
            layer_init(nn.Linear(hidden, 1), std=VALUE_INIT_STD),
        )

    def forward(self, obs: torch.Tensor, masks: torch.Tensor, hidden: Hidden) -> PolicyOutput:
        if hidden is not None:
            raise ValueError("the feedforward network takes no recurrent state")
        logits = mask_logits(self.actor(obs), masks)
        return PolicyOutput(logits, self.critic(obs).squeeze(-1), None)

    def initial_hidden(self, batch_size: int) -> Hidden:
        return None

    @property
    def policy_layer(self) -> nn.Linear:
        layer = self.actor[-1]
        assert isinstance(layer, nn.Linear)
        return layer


class RecurrentActorCritic(ActorCriticBase):
    """MLP encoder, one LSTM layer, then policy and value heads on the LSTM output."""

    def __init__(self, obs_dim: int, num_actions: int, hidden: int = 64) -> None:
        super().__init__()
        self.encoder = nn.Sequential(layer_init(nn.Linear(obs_dim, hidden)), nn.Tanh())
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        for name, param in self.lstm.named_parameters():
            if name.startswith("weight"):
                nn.init.orthogonal_(param, 1.0)
            else:
                nn.init.constant_(param, 0.0)
        self.policy_head = layer_init(nn.Linear(hidden, num_actions), std=0.01)
        self.value_head = layer_init(nn.Linear(hidden, 1), std=VALUE_INIT_STD)

    def forward(self, obs: torch.Tensor, masks: torch.Tensor, hidden: Hidden) -> PolicyOutput:
        features, next_hidden = self.lstm(self.encoder(obs), hidden)
        logits = mask_logits(self.policy_head(features), masks)
        return PolicyOutput(logits, self.value_head(features).squeeze(-1), next_hidden)

    def initial_hidden(self, batch_size: int) -> Hidden:
        weight = self.value_head.weight
        zeros = weight.new_zeros(1, batch_size, self.lstm.hidden_size)
        return zeros, zeros.clone()

    @property
    def hidden_size(self) -> int | None:
        return self.lstm.hidden_size

    @property
    def policy_layer(self) -> nn.Linear:
        return self.policy_head
