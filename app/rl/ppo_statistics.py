"""What a PPO update reports: minibatch statistics gathered on the device and read to
the host in one transfer at the end of the update."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from app.rl.ppo_loss import Losses

LAYER_STAT_NAMES = ("norm", "mean", "std", "max_abs")


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


class UpdateStatistics:
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
        losses: Losses,
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

    def metrics(
        self,
        explained_var: torch.Tensor,
        *,
        entropy_coef: float,
        early_stop_epoch: int | None,
        train_steps: int,
        layer_names: list[str],
    ) -> PPOUpdateMetrics:
        """The update's statistics as host values, read in one device-to-host copy;
        `layer_names` names the parameters in the order their gradients were recorded."""
        host, layer_rows = self._to_host(explained_var)
        layer_stats = None
        if layer_rows:
            layer_stats = {
                name: dict(zip(LAYER_STAT_NAMES, row, strict=True))
                for name, row in zip(layer_names, layer_rows, strict=True)
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
            train_steps=train_steps,
            layer_grad_stats=layer_stats,
        )

    def _to_host(self, explained_var: torch.Tensor) -> tuple[dict[str, float], list[list[float]]]:
        """Named summary values and per-parameter layer rows."""
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
