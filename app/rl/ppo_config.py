"""PPO's hyperparameters: the `ppo` section of a run's configuration."""

from __future__ import annotations

from dataclasses import dataclass


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
