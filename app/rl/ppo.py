"""The PPO agent: action masking for the feedforward and the recurrent actor-critic, and
the update loop over epochs and minibatches.

One update path serves both networks: the buffer hands over sequences (length 1 for the
feedforward network, episode chunks for the LSTM), so both report the same statistics.
Statistics stay on the device until the end of an update and are read to the host in one
transfer (app/rl/ppo_statistics.py); the only other host sync is the KL early-stop check,
once per update epoch. The loss is app/rl/ppo_loss.py, the hyperparameters
app/rl/ppo_config.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from app.rl.buffer import RolloutBuffer, SequenceBatch
from app.rl.networks import (
    ActorCritic,
    ActorCriticBase,
    Hidden,
    PolicyOutput,
    RecurrentActorCritic,
    action_log_probs,
    sample_actions,
)
from app.rl.ppo_config import PPOConfig
from app.rl.ppo_loss import ppo_losses
from app.rl.ppo_statistics import (
    PPOUpdateMetrics,
    UpdateStatistics,
    explained_variance,
    layer_grad_stats,
)

# KL early stopping triggers when an epoch's mean approx KL exceeds this multiple of target_kl.
KL_STOP_FACTOR = 1.5


@dataclass(frozen=True)
class ActResult:
    """One policy step for every environment; `hidden` is the state to act from next."""

    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    hidden: Hidden


class PPOAgent:
    """A PPO learner over a feedforward or recurrent actor-critic with action masking."""

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        config: PPOConfig | None = None,
        recurrent: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        self.config = config or PPOConfig()
        self.recurrent = recurrent
        self.device = torch.device(device)
        self.obs_dim = obs_dim
        self.num_actions = num_actions
        network_type = RecurrentActorCritic if recurrent else ActorCritic
        self.network: ActorCriticBase = network_type(
            obs_dim, num_actions, self.config.hidden_size
        ).to(self.device)
        if self.config.action_prior is not None:
            if len(self.config.action_prior) != num_actions:
                raise ValueError(
                    f"action_prior has {len(self.config.action_prior)} logits for "
                    f"{num_actions} actions"
                )
            self.network.set_action_prior(self.config.action_prior)
        # Fused Adam can skip a step on the device (see _step_if_finite).
        self.optimizer = torch.optim.Adam(
            self.network.parameters(), lr=self.config.lr, eps=1e-5, fused=True
        )
        self.train_steps = 0

    def initial_hidden(self, batch_size: int) -> Hidden:
        """The recurrent state for the first step of an episode (None when feedforward)."""
        return self.network.initial_hidden(batch_size)

    def new_buffer(self, num_envs: int, num_steps: int) -> RolloutBuffer:
        """A rollout buffer shaped for this agent's observations, actions and state."""
        return RolloutBuffer(
            num_envs,
            num_steps,
            self.obs_dim,
            self.num_actions,
            hidden_size=self.network.hidden_size,
            device=self.device,
        )

    def act(
        self,
        obs: torch.Tensor,
        masks: torch.Tensor,
        hidden: Hidden,
        deterministic: bool = False,
        uniform: torch.Tensor | None = None,
    ) -> ActResult:
        """Pick one action per environment from obs (N, obs_dim) and masks (N, actions).

        `hidden` is the state returned by the previous step, or `initial_hidden(N)` at the
        start of an episode; the result carries the state for the next step. `uniform`
        (N, actions) in [0, 1) is the noise the actions are sampled with, by default drawn
        from torch's global generator.
        """
        obs, masks = obs.to(self.device), masks.to(self.device)
        with torch.no_grad():
            output: PolicyOutput = self.network(obs.unsqueeze(1), masks.unsqueeze(1), hidden)
            logits = output.logits.squeeze(1)
            if deterministic:
                actions = logits.argmax(-1)
            else:
                if uniform is None:
                    uniform = torch.rand(masks.shape, device=self.device)
                actions = sample_actions(logits, uniform.to(self.device))
            logprobs = action_log_probs(logits, actions)
            return ActResult(actions, logprobs, output.values.squeeze(1), output.hidden)

    def entropy_coef(self) -> float:
        """The entropy coefficient for the next update (annealed, floored)."""
        cfg = self.config
        progress = 0.0
        if cfg.ent_anneal_updates > 0:
            progress = min(self.train_steps / cfg.ent_anneal_updates, 1.0)
        coef = cfg.ent_coef + progress * (cfg.ent_coef_final - cfg.ent_coef)
        return max(coef, cfg.ent_coef_floor)

    def update(self, buffer: RolloutBuffer, collect_layer_stats: bool = False) -> PPOUpdateMetrics:
        """Run the PPO epochs over a full buffer and report what happened."""
        cfg = self.config
        advantages, returns = buffer.advantages_and_returns(cfg.gamma, cfg.gae_lambda)
        if cfg.normalize_advantages:
            advantages = normalized(advantages, decided=buffer.masks.sum(-1) > 1)
        batch = buffer.sequences(self._chunk_length(buffer.num_steps), advantages, returns)
        entropy_coef = self.entropy_coef()
        stats = UpdateStatistics()
        early_stop_epoch = None
        for epoch in range(1, cfg.update_epochs + 1):
            epoch_kl = self._train_epoch(batch, entropy_coef, stats, collect_layer_stats)
            if epoch < cfg.update_epochs and self._kl_too_high(epoch_kl):
                early_stop_epoch = epoch
                break
        self.train_steps += 1
        return stats.metrics(
            explained_variance(buffer.values, returns),
            entropy_coef=entropy_coef,
            early_stop_epoch=early_stop_epoch,
            train_steps=self.train_steps,
            layer_names=[name for name, _ in self.network.named_parameters()],
        )

    def state_dict(self) -> dict[str, Any]:
        """Network, optimizer and update count: what a checkpoint needs to resume."""
        return {
            "network": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train_steps": self.train_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.train_steps = int(state["train_steps"])

    def _chunk_length(self, num_steps: int) -> int:
        """Feedforward: single transitions. Recurrent: chunks, at most a whole episode."""
        if not self.recurrent:
            return 1
        return min(self.config.chunk_length or num_steps, num_steps)

    def _kl_too_high(self, epoch_kl: torch.Tensor) -> bool:
        """The one host sync an update allows per epoch."""
        target = self.config.target_kl
        return target is not None and epoch_kl.item() > KL_STOP_FACTOR * target

    def _train_epoch(
        self,
        batch: SequenceBatch,
        entropy_coef: float,
        stats: UpdateStatistics,
        collect_layer_stats: bool,
    ) -> torch.Tensor:
        """One pass over the shuffled sequences; returns the epoch's mean approx KL."""
        num_minibatches = min(self.config.num_minibatches, batch.num_sequences)
        order = torch.randperm(batch.num_sequences, device=self.device)
        kls = [
            self._train_minibatch(batch.select(index), entropy_coef, stats, collect_layer_stats)
            for index in order.tensor_split(num_minibatches)
        ]
        return torch.stack(kls).mean()

    def _train_minibatch(
        self,
        minibatch: SequenceBatch,
        entropy_coef: float,
        stats: UpdateStatistics,
        collect_layer_stats: bool,
    ) -> torch.Tensor:
        losses = ppo_losses(self.network, minibatch, self.config, entropy_coef)
        self.optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(losses.total)
        layers = layer_grad_stats(self.network) if collect_layer_stats else None
        grad_norm = nn.utils.clip_grad_norm_(self.network.parameters(), self.config.max_grad_norm)
        self._step_if_finite(torch.isfinite(losses.total) & torch.isfinite(grad_norm))
        stats.record(losses, grad_norm, minibatch.valid, layers)
        return losses.approx_kl

    def _step_if_finite(self, finite: torch.Tensor) -> None:
        """Apply the optimizer step unless the minibatch went NaN/Inf, decided on the device.

        A Python `if` on `finite` would sync the host every minibatch. Fused Adam reads
        `found_inf` on the device and, when it is 1, leaves parameters, moments and step
        count untouched: the mechanism torch.amp.GradScaler uses to skip overflowed steps.
        """
        self.optimizer.found_inf = (~finite).to(torch.float32)  # type: ignore[attr-defined]
        self.optimizer.step()


def normalized(advantages: torch.Tensor, decided: torch.Tensor) -> torch.Tensor:
    """Advantages at zero mean and unit variance over the whole update (not per minibatch:
    a minibatch of a few episodes' steps is too small for a stable scale), measured on the
    steps where the policy had a choice (`decided`). Rewards of a fraction of a point
    would otherwise leave the policy gradient far below the entropy bonus. A step with one
    valid action carries no policy gradient, and its advantage is the critic's error on a
    return it cannot foresee; measured with them, the mean would shift every decision's
    advantage by that error."""
    if advantages.numel() < 2:
        return advantages
    # Weights rather than a boolean index, which would read the count back from the device.
    weights = torch.where(decided.sum() >= 2, decided, torch.ones_like(decided)).float()
    count = weights.sum()
    mean = (advantages * weights).sum() / count
    variance = ((advantages - mean) ** 2 * weights).sum() / (count - 1)
    return (advantages - mean) / (variance.sqrt() + 1e-8)
