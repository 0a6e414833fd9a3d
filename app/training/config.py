"""One run's whole configuration: every size and threshold in one object (the CLI sets
the ones a user changes most; the rest are defaults here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.contracts.actions import Action
from app.contracts.events import TelemetryLevel
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

CONTROLLERS = ("ppo", "heuristic", "static")

# PPO as tuned for the seed controller's episodes of 24 decisions. An untrained policy
# that picks uniformly culls a live seed within a few epochs (CULL is one of two valid
# actions), so it would almost never see what a blended seed is worth; a prior for WAIT
# lets early episodes carry seeds far enough to learn from.
WAIT_PRIOR_LOGIT = 2.0
CONTROLLER_PPO = PPOConfig(
    lr=1e-3,
    ent_coef=0.02,
    ent_coef_final=0.005,
    ent_anneal_updates=50,
    ent_coef_floor=0.005,
    action_prior=tuple(WAIT_PRIOR_LOGIT if a == Action.WAIT else 0.0 for a in Action),
)


@dataclass(frozen=True)
class RunConfig:
    controller: str = "ppo"
    recurrent: bool = False
    envs: int = 4
    episodes: int = 32
    max_epochs: int = 25
    dataset: str = "digits"
    data_dir: Path | None = None
    seed: int = 0
    device: str = "cpu"
    telemetry_level: TelemetryLevel = TelemetryLevel.NORMAL
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
