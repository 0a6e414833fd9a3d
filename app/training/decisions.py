"""The controller's decision after every epoch but the last, and what it earns.

Each environment is observed, the controller (the PPO agent, or the heuristic or static
rules) picks one action per environment, and each action is carried out as a command
under that environment's epoch span. The reward of a decision is known one epoch later:
what the seed's measured contribution gained, less the seed's parameter rent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from opentelemetry import trace
from opentelemetry.trace import Span

from app.contracts.actions import NUM_ACTIONS, Action, action_mask
from app.contracts.signals import TrainingSignals
from app.control.heuristic import HeuristicController
from app.control.static import StaticController
from app.rl.features import observation
from app.rl.networks import Hidden
from app.rl.ppo import PPOAgent
from app.rl.reward_hacking import StepOutcome
from app.rl.rewards import step_reward
from app.training.commands import run_command
from app.training.config import RunConfig
from app.training.environment import HostEnvironment


@dataclass
class Decision:
    """A decision whose reward is known only after the next epoch."""

    obs: torch.Tensor
    masks: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    hidden: Hidden
    contributions: list[float]
    germinated: list[bool]


class Controller:
    """Decides and rewards the steps of a batch's episodes."""

    def __init__(self, config: RunConfig, agent: PPOAgent | None) -> None:
        self.config = config
        self.agent = agent
        self.rules: HeuristicController | StaticController = (
            StaticController()
            if config.controller == "static"
            else HeuristicController(config.heuristic)
        )

    def decide(
        self,
        envs: list[HostEnvironment],
        epoch: int,
        hidden: Hidden,
        epoch_spans: list[Span],
    ) -> tuple[Decision, Hidden]:
        """Choose and apply one action per environment (under that env's epoch span);
        returns the decision and the recurrent state to act from next."""
        max_epochs = self.config.max_epochs
        obs = torch.tensor(
            [observation(signals(env), env.slot.state, epoch, max_epochs) for env in envs],
            dtype=torch.float32,
        )
        masks = torch.tensor(
            [action_mask(env.slot.stage, signals(env).host_stabilized) for env in envs]
        )
        if self.agent is not None:
            # Each environment's own noise, so that its actions are the same in any process.
            uniform = torch.stack([torch.rand(NUM_ACTIONS, generator=env.rng) for env in envs])
            result = self.agent.act(obs, masks, hidden, uniform=uniform)
            actions, logprobs, values = result.actions, result.logprobs, result.values
            next_hidden = result.hidden
        else:
            decided = [
                self.rules.decide(signals(env), env.slot.state, env.env_id + env.seeds_grown)
                for env in envs
            ]
            actions = torch.tensor([int(a) for a in decided])
            logprobs = values = torch.zeros(len(envs))
            next_hidden = None
        # Taken before acting: a cull's reward is the contribution it gives up.
        contributions = [env.slot.contribution for env in envs]
        chosen = zip(envs, epoch_spans, actions.tolist(), masks.tolist(), strict=True)
        germinated = []
        for env, span, action, mask in chosen:
            with trace.use_span(span, end_on_exit=False):
                executed = run_command(env, Action(action), mask[action], self.config.controller)
            germinated.append(executed and Action(action).is_germinate)
        decision = Decision(
            obs, masks, actions, logprobs, values, hidden, contributions, germinated
        )
        return decision, next_hidden

    def rewards(
        self, envs: list[HostEnvironment], decision: Decision, contributions: list[float]
    ) -> list[float]:
        """Each environment's reward for `decision`, now that the next epoch has run and
        its seed contributes `contributions`."""
        steps = zip(envs, decision.contributions, contributions, decision.germinated, strict=True)
        return [
            step_reward(
                before,
                after,
                env.seed_params,
                env.host_params,
                self.config.reward,
                germinated=germinated,
            )
            for env, before, after, germinated in steps
        ]


def signals(env: HostEnvironment) -> TrainingSignals:
    """The environment's signals after its latest epoch."""
    if env.signals is None:
        raise RuntimeError(f"env {env.env_id} has not run an epoch yet")
    return env.signals


def outcomes(
    decision: Decision, rewards: list[float], contributions: list[float]
) -> list[StepOutcome]:
    """Each env's step of `decision`: its action, reward and the accuracy it bought, the
    seed's contribution gained (the host's own learning is no controller's doing)."""
    steps = zip(
        decision.actions.tolist(), rewards, decision.contributions, contributions, strict=True
    )
    return [StepOutcome(Action(a), r, after - before) for a, r, before, after in steps]
