"""PPO's hyperparameters: the `ppo` section of a run's configuration."""

from __future__ import annotations

from dataclasses import dataclass

from app.settings import check


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters.

    The entropy coefficient anneals linearly from `ent_coef` to `ent_coef_final` over
    `ent_anneal_updates` updates (0 keeps it at `ent_coef`) and never drops below
    `ent_coef_floor`. A recurrent update uses chunks of `chunk_length` steps, or whole
    episodes when None. `target_kl` None disables KL early stopping. `action_prior`, one
    logit per action, is the untrained policy's preference (uniform when None).
    `normalize_advantages` scales each update's advantages to zero mean and unit variance.
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
    normalize_advantages: bool = True
    hidden_size: int = 64
    action_prior: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        check(self, "lr", "clip_coef", "value_clip_coef", "max_grad_norm", "target_kl", gt=0)
        check(self, "update_epochs", "num_minibatches", "hidden_size", "chunk_length", ge=1)
        check(self, "vf_coef", "ent_coef", "ent_coef_final", "ent_coef_floor", ge=0)
        check(self, "ent_anneal_updates", ge=0)
        check(self, "gamma", "gae_lambda", ge=0, le=1)
