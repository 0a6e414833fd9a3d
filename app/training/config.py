"""One run's whole configuration: every size and threshold in one object (the CLI sets
the ones a user changes most; the rest are defaults here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.contracts.actions import Action
from app.control.heuristic import HeuristicConfig
from app.control.tracker import TrackerConfig
from app.model.slot import SlotConfig
from app.rl.anomaly import AnomalyThresholds
from app.rl.ppo_config import PPOConfig
from app.rl.reward_hacking import RewardHackingConfig
from app.rl.rewards import RewardConfig
from app.settings import check, require
from app.training.environment import HostConfig
from app.training.health import HostHealthConfig
from app.training.memory import MemoryConfig
from app.training.progress import ProgressThresholds
from app.training.run_basics import CONTROLLERS as CONTROLLERS
from app.training.run_basics import RunBasics

# PPO as tuned for the seed controller's episodes of 21 decisions, 8 updates in a default
# run (docs/training.md). Returns run to the episode's end (gae_lambda 1): a germination
# pays off only when the seed blends, epochs later, and a critic fitted on a few dozen
# episodes is too rough to bootstrap from. The entropy bonus is annealed over those 8
# updates, so the last batches act on what was learned. An untrained policy that picks
# uniformly culls a live seed within a few epochs, so it would almost never see what a
# blended seed is worth: the priors keep seeds through blending (against CULL) and
# fossilize what passed probation (the gate still refuses a seed that adds too little).
PRIOR_LOGITS = {Action.WAIT: 1.0, Action.FOSSILIZE: 2.0, Action.CULL: -3.0}
CONTROLLER_PPO = PPOConfig(
    lr=1e-3,
    gae_lambda=1.0,
    clip_coef=0.3,
    update_epochs=6,
    target_kl=0.05,
    ent_coef=0.02,
    ent_coef_final=0.002,
    ent_anneal_updates=8,
    ent_coef_floor=0.002,
    action_prior=tuple(PRIOR_LOGITS.get(a, 0.0) for a in Action),
)


@dataclass(frozen=True)
class RunConfig(RunBasics):
    """The top-level settings (RunBasics) and a section for each part of the run."""

    host: HostConfig = field(default_factory=HostConfig)
    slot: SlotConfig = field(default_factory=SlotConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    heuristic: HeuristicConfig = field(default_factory=HeuristicConfig)
    ppo: PPOConfig = CONTROLLER_PPO
    reward: RewardConfig = field(default_factory=RewardConfig)
    reward_hacking: RewardHackingConfig = field(default_factory=RewardHackingConfig)
    anomaly: AnomalyThresholds = field(default_factory=AnomalyThresholds)
    progress: ProgressThresholds = field(default_factory=ProgressThresholds)
    health: HostHealthConfig = field(default_factory=HostHealthConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)

    def __post_init__(self) -> None:
        require(
            self, "controller", self.controller in CONTROLLERS, f"one of {', '.join(CONTROLLERS)}"
        )
        check(self, "envs", "episodes", ge=1)
        check(self, "max_epochs", ge=2)

    @property
    def batches(self) -> int:
        """PPO batches needed for `episodes` episodes, `envs` at a time."""
        return -(-self.episodes // self.envs)
