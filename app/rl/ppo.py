"""PPO with action masking for the feedforward and the recurrent actor-critic.

One update path serves both networks: the buffer hands over sequences (length 1 for the
feedforward network, episode chunks for the LSTM), so both report the same statistics.
Statistics stay on the device until the end of an update and are read to the host in one
transfer; the only other host sync is the KL early-stop check, once per update epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

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
    policy_entropy,
    sample_actions,
)

# KL early stopping triggers when an epoch's mean approx KL exceeds this multiple of target_kl.
KL_STOP_FACTOR = 1.5


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters.

    The entropy coefficient anneals linearly from `ent_coef` to `ent_coef_final` over
    `ent_anneal_updates` updates (0 keeps it at `ent_coef`) and never drops below
    `ent_coef_floor`. A recurrent update uses chunks of `chunk_length` steps, or whole
    episodes when None. `target_kl` None disables KL early stopping. `action_prior`, one
    logit per action, is the untrained policy's preference (uniform when None).
    """

    lr: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    clip_value: bool = True
    value_clip_coef: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.05
    ent_coef_final: float = 0.01
    ent_anneal_updates: int = 0
    ent_coef_floor: float = 0.0
    max_grad_norm: float = 0.5
    update_epochs: int = 4
    num_minibatches: int = 4
    chunk_length: int | None = None
    target_kl: float | None = 0.015
    hidden_size: int = 64
    action_prior: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        positive = {
            "lr": self.lr,
            "clip_coef": self.clip_coef,
            "value_clip_coef": self.value_clip_coef,
            "max_grad_norm": self.max_grad_norm,
            "update_epochs": self.update_epochs,
            "num_minibatches": self.num_minibatches,
            "hidden_size": self.hidden_size,
            "chunk_length": self.chunk_length,
            "target_kl": self.target_kl,
        }
        for name, value in positive.items():
            if value is not None and not value > 0:
                raise ValueError(f"PPOConfig.{name} must be > 0, got {value}")
        non_negative = {
            "vf_coef": self.vf_coef,
            "ent_coef": self.ent_coef,
            "ent_coef_final": self.ent_coef_final,
            "ent_coef_floor": self.ent_coef_floor,
            "ent_anneal_updates": self.ent_anneal_updates,
        }
        for name, value in non_negative.items():
            if not value >= 0:
                raise ValueError(f"PPOConfig.{name} must be >= 0, got {value}")
        for name, value in {"gamma": self.gamma, "gae_lambda": self.gae_lambda}.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"PPOConfig.{name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class ActResult:
    """One policy step for every environment; `hidden` is the state to act from next."""

    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    hidden: Hidden


@dataclass(frozen=True)
class PPOUpdateMetrics:
    """What one update did, as host values.

    Losses, entropy, approx_kl and clip_fraction are means over the minibatches; the ratio
    statistics cover every valid step of every minibatch. `explained_variance` compares the
    rollout's values with its returns; it is NaN when the returns do not vary (undefined).
    `early_stop_epoch` counts the epochs that ran before KL stopped the update. has_nan and
    has_inf cover losses, ratios and gradient norms; a minibatch with either was not applied.
    """

    policy_loss: float
    value_loss: float
    entropy: float
    entropy_coef: float
    approx_kl: float
    clip_fraction: float
    ratio_mean: float
    ratio_max: float
    ratio_min: float
    ratio_std: float
    explained_variance: float
    early_stop_epoch: int | None
    grad_norm: float
    has_nan: bool
    has_inf: bool
    train_steps: int
    layer_grad_stats: dict[str, dict[str, float]] | None


class _Losses(NamedTuple):
    total: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor
    approx_kl: torch.Tensor
    clip_fraction: torch.Tensor
    ratio: torch.Tensor


LAYER_STAT_NAMES = ("norm", "mean", "std", "max_abs")


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over the valid steps; where() rather than a product keeps padding's NaN out."""
    return torch.where(valid, values, 0.0).sum() / valid.sum()


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """1 - Var(returns - values) / Var(returns), NaN when the returns do not vary."""
    returns_variance = returns.var(correction=0)
    ratio = (returns - values).var(correction=0) / returns_variance
    return torch.where(returns_variance > 0, 1.0 - ratio, math.nan)


def layer_grad_stats(network: nn.Module) -> torch.Tensor:
    """Per parameter (rows, in named_parameters order): the LAYER_STAT_NAMES of its gradient."""
    rows = []
    for param in network.parameters():
        grad = torch.zeros_like(param) if param.grad is None else param.grad
        rows.append(
            torch.stack([grad.norm(), grad.mean(), grad.std(correction=0), grad.abs().max()])
        )
    return torch.stack(rows)


class _UpdateStatistics:
    """Minibatch statistics collected as device tensors and read to the host once."""

    # Reported as the mean over minibatches; grad_norm is reported as the maximum.
    MEANS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")
    # Checked for NaN/Inf, together with the ratios.
    CHECKED = ("policy_loss", "value_loss", "entropy", "grad_norm")

    def __init__(self) -> None:
        self.scalars: dict[str, list[torch.Tensor]] = {
            name: [] for name in (*self.MEANS, "grad_norm")
        }
        self.ratios: list[torch.Tensor] = []
        self.valid: list[torch.Tensor] = []
        self.layers: list[torch.Tensor] = []

    def record(
        self,
        losses: _Losses,
        grad_norm: torch.Tensor,
        valid: torch.Tensor,
        layers: torch.Tensor | None,
    ) -> None:
        for name in self.MEANS:
            self.scalars[name].append(getattr(losses, name).detach())
        self.scalars["grad_norm"].append(grad_norm)
        self.ratios.append(losses.ratio.detach().flatten())
        self.valid.append(valid.flatten())
        if layers is not None:
            self.layers.append(layers)

    def to_host(self, explained_var: torch.Tensor) -> tuple[dict[str, float], list[list[float]]]:
        """Named summary values and per-parameter layer rows, in one device-to-host copy."""
        summary = self._summary(explained_var)
        flat = [torch.stack(list(summary.values()))]
        if self.layers:
            flat.append(self._layer_summary().flatten())
        values = torch.cat(flat).tolist()
        head, rest = values[: len(summary)], values[len(summary) :]
        width = len(LAYER_STAT_NAMES)
        rows = [rest[i : i + width] for i in range(0, len(rest), width)]
        return dict(zip(summary, head, strict=True)), rows

    def _summary(self, explained_var: torch.Tensor) -> dict[str, torch.Tensor]:
        per_minibatch = {name: torch.stack(values) for name, values in self.scalars.items()}
        ratios, valid = torch.cat(self.ratios), torch.cat(self.valid)
        count = valid.sum()
        ratio_mean = torch.where(valid, ratios, 0.0).sum() / count
        ratio_var = torch.where(valid, (ratios - ratio_mean) ** 2, 0.0).sum() / count
        checked = torch.cat(
            [*(per_minibatch[name] for name in self.CHECKED), torch.where(valid, ratios, 1.0)]
        )
        return {
            **{name: per_minibatch[name].mean() for name in self.MEANS},
            "grad_norm": per_minibatch["grad_norm"].max(),
            "ratio_mean": ratio_mean,
            "ratio_max": torch.where(valid, ratios, -math.inf).max(),
            "ratio_min": torch.where(valid, ratios, math.inf).min(),
            "ratio_std": ratio_var.sqrt(),
            "nan_count": checked.isnan().sum().to(ratios.dtype),
            "inf_count": checked.isinf().sum().to(ratios.dtype),
            "explained_variance": explained_var.to(ratios.dtype),
        }

    def _layer_summary(self) -> torch.Tensor:
        """Per parameter: norm, mean and std averaged over minibatches, max_abs maximized."""
        layers = torch.stack(self.layers)
        return torch.cat([layers[..., :3].mean(0), layers[..., 3:].amax(0)], -1)


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
    ) -> ActResult:
        """Pick one action per environment from obs (N, obs_dim) and masks (N, actions).

        `hidden` is the state returned by the previous step, or `initial_hidden(N)` at the
        start of an episode; the result carries the state for the next step.
        """
        obs, masks = obs.to(self.device), masks.to(self.device)
        with torch.no_grad():
            output: PolicyOutput = self.network(obs.unsqueeze(1), masks.unsqueeze(1), hidden)
            logits = output.logits.squeeze(1)
            actions = logits.argmax(-1) if deterministic else sample_actions(logits)
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
        batch = buffer.sequences(self._chunk_length(buffer.num_steps), advantages, returns)
        entropy_coef = self.entropy_coef()
        stats = _UpdateStatistics()
        early_stop_epoch = None
        for epoch in range(1, cfg.update_epochs + 1):
            epoch_kl = self._train_epoch(batch, entropy_coef, stats, collect_layer_stats)
            if epoch < cfg.update_epochs and self._kl_too_high(epoch_kl):
                early_stop_epoch = epoch
                break
        self.train_steps += 1
        host, layer_rows = stats.to_host(explained_variance(buffer.values, returns))
        return self._metrics(host, layer_rows, entropy_coef, early_stop_epoch)

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
        stats: _UpdateStatistics,
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
        stats: _UpdateStatistics,
        collect_layer_stats: bool,
    ) -> torch.Tensor:
        losses = self._losses(minibatch, entropy_coef)
        self.optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(losses.total)
        layers = layer_grad_stats(self.network) if collect_layer_stats else None
        grad_norm = nn.utils.clip_grad_norm_(self.network.parameters(), self.config.max_grad_norm)
        self._step_if_finite(torch.isfinite(losses.total) & torch.isfinite(grad_norm))
        stats.record(losses, grad_norm, minibatch.valid, layers)
        return losses.approx_kl

    def _losses(self, minibatch: SequenceBatch, entropy_coef: float) -> _Losses:
        cfg = self.config
        valid = minibatch.valid
        output: PolicyOutput = self.network(minibatch.obs, minibatch.masks, minibatch.hidden)
        logratio = action_log_probs(output.logits, minibatch.actions) - minibatch.logprobs
        ratio = logratio.exp()
        advantages = minibatch.advantages
        clipped_ratio = ratio.clamp(1.0 - cfg.clip_coef, 1.0 + cfg.clip_coef)
        surrogate = torch.maximum(-advantages * ratio, -advantages * clipped_ratio)
        policy_loss = masked_mean(surrogate, valid)
        value_loss = 0.5 * masked_mean(self._value_errors(output.values, minibatch), valid)
        mean_entropy = masked_mean(policy_entropy(output.logits), valid)
        with torch.no_grad():
            approx_kl = masked_mean((ratio - 1.0) - logratio, valid)
            clip_fraction = masked_mean(((ratio - 1.0).abs() > cfg.clip_coef).float(), valid)
        total = policy_loss - entropy_coef * mean_entropy + cfg.vf_coef * value_loss
        return _Losses(
            total, policy_loss, value_loss, mean_entropy, approx_kl, clip_fraction, ratio
        )

    def _value_errors(self, values: torch.Tensor, minibatch: SequenceBatch) -> torch.Tensor:
        """Squared value errors, pessimistic over the clipped and unclipped value (CleanRL)."""
        errors = (values - minibatch.returns) ** 2
        if not self.config.clip_value:
            return errors
        clip = self.config.value_clip_coef
        clipped = minibatch.values + (values - minibatch.values).clamp(-clip, clip)
        return torch.maximum(errors, (clipped - minibatch.returns) ** 2)

    def _step_if_finite(self, finite: torch.Tensor) -> None:
        """Apply the optimizer step unless the minibatch went NaN/Inf, decided on the device.

        A Python `if` on `finite` would sync the host every minibatch. Fused Adam reads
        `found_inf` on the device and, when it is 1, leaves parameters, moments and step
        count untouched: the mechanism torch.amp.GradScaler uses to skip overflowed steps.
        """
        self.optimizer.found_inf = (~finite).to(torch.float32)  # type: ignore[attr-defined]
        self.optimizer.step()

    def _metrics(
        self,
        host: dict[str, float],
        layer_rows: list[list[float]],
        entropy_coef: float,
        early_stop_epoch: int | None,
    ) -> PPOUpdateMetrics:
        layer_stats = None
        if layer_rows:
            names = [name for name, _ in self.network.named_parameters()]
            layer_stats = {
                name: dict(zip(LAYER_STAT_NAMES, row, strict=True))
                for name, row in zip(names, layer_rows, strict=True)
            }
        return PPOUpdateMetrics(
            policy_loss=host["policy_loss"],
            value_loss=host["value_loss"],
            entropy=host["entropy"],
            entropy_coef=entropy_coef,
            approx_kl=host["approx_kl"],
            clip_fraction=host["clip_fraction"],
            ratio_mean=host["ratio_mean"],
            ratio_max=host["ratio_max"],
            ratio_min=host["ratio_min"],
            ratio_std=host["ratio_std"],
            explained_variance=host["explained_variance"],
            early_stop_epoch=early_stop_epoch,
            grad_norm=host["grad_norm"],
            has_nan=host["nan_count"] > 0,
            has_inf=host["inf_count"] > 0,
            train_steps=self.train_steps,
            layer_grad_stats=layer_stats,
        )
