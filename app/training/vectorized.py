"""The vectorized PPO loop: N environments in lockstep, one PPO update per batch.

Each batch runs one episode per environment: `max_epochs` epochs of host training, with a
controller decision after every epoch but the last (app/training/decisions.py). The
reward of a decision is what the seed's measured contribution gains over the next epoch
minus the seed's parameter rent (plus the germination bonus, if one is configured).
Memory is sampled after every lockstep epoch, and each batch's steps go to the reward
hacking detector. One trace per batch: the `esper.batch` root links to the run's
`esper.run` span; under it one `esper.episode` per environment holding its `esper.epoch`
spans, and the `esper.ppo.update` span.

Across several processes (app/distributed/world.py) each rank steps its share of the
environments; rank 0 opens the batch's span and hands its context to the other ranks, so
that their episodes are children of it in the same trace, gathers their rollouts, updates
and hands back the weights, the telemetry level and the batch's result.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from statistics import fmean
from typing import Any

import torch
from opentelemetry import trace
from opentelemetry.trace import Link, Span

from app import telemetry
from app.contracts import telemetry_names as names
from app.contracts.actions import NUM_ACTIONS
from app.contracts.events import EventType, TelemetryEvent, TelemetryLevel
from app.distributed.world import SINGLE, World
from app.rl.anomaly import AnomalyDetector, TelemetryEscalation, report
from app.rl.buffer import RolloutBuffer
from app.rl.features import OBS_DIM
from app.rl.ppo import PPOAgent
from app.rl.ppo_statistics import PPOUpdateMetrics
from app.rl.reward_hacking import RewardHackingDetector, StepOutcome
from app.training.batch_parts import BatchResult, Episodes
from app.training.checkpoint import CheckpointError
from app.training.config import RunConfig
from app.training.datasets import Dataset
from app.training.decisions import Controller, Decision, outcomes, signals
from app.training.environment import HostEnvironment
from app.training.environment_batch import EnvironmentBatch, Scope
from app.training.memory import MemoryMonitor
from app.training.progress import HISTORY_LENGTH, ProgressDetector
from app.training.rank_exchange import RankExchange
from app.training.resume import check_agent_state, check_setup, read_state, run_setup

tracer = trace.get_tracer("esper.training")


@dataclass
class Progress:
    """What has been trained so far; saved in checkpoints."""

    batches_completed: int = 0
    episodes_completed: int = 0
    accuracies: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_LENGTH))
    rewards: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_LENGTH))


class VectorizedTrainer:
    """Runs batches of episodes over parallel host environments and trains the controller."""

    def __init__(
        self,
        config: RunConfig,
        dataset: Dataset,
        run_id: str = "",
        run_span: Span | None = None,
        on_epoch: Callable[[float], None] | None = None,
        world: World = SINGLE,
    ) -> None:
        """`on_epoch` is told, after each lockstep epoch, how many episodes' worth of
        work it completed (a fraction), so a progress bar can move within a batch.
        `world` is the processes this training is split across; this one steps its
        share of the environments."""
        self.config = config
        self.world = world
        self.exchange = RankExchange(world)
        self.run_id = run_id
        self.on_epoch = on_epoch
        self.device = torch.device(config.device)
        self.run_links = [Link(run_span.get_span_context())] if run_span is not None else []
        torch.manual_seed(config.seed)
        dataset = dataset.to(self.device)
        self.envs = [
            HostEnvironment(
                env_id,
                dataset,
                config.host,
                config.slot,
                config.tracker,
                seed=config.seed * 10_007 + env_id,
                device=self.device,
                health_config=config.health,
            )
            for env_id in world.env_ids(config.envs)
        ]
        self.agent = (
            PPOAgent(OBS_DIM, NUM_ACTIONS, config.ppo, config.recurrent, self.device)
            if config.controller == "ppo"
            else None
        )
        self.controller = Controller(config, self.agent)
        self.detector = AnomalyDetector(config.anomaly)
        self.escalation = TelemetryEscalation(
            config.telemetry_level, config.anomaly.escalation_updates
        )
        self.progress_detector = ProgressDetector(config.progress)
        self.reward_hacking = RewardHackingDetector(config.reward_hacking)
        self.memory = MemoryMonitor(config.memory, self.device)
        self.progress = Progress()
        self.last_batch: BatchResult | None = None
        telemetry.set_level(config.telemetry_level)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to continue this run where it stopped. In a run of
        several processes every rank calls it, to share its environments' states; rank
        0's, which holds the learner's, is the checkpoint."""
        progress = self.progress
        mine = [(env.env_id, env.rng.get_state(), env.seeds_grown) for env in self.envs]
        shares = self.world.all_gather(mine, "sharing the environments' states")
        envs = sorted(env for share in shares for env in share)
        return {
            **self._setup(),
            "agent": None if self.agent is None else self.agent.state_dict(),
            "batches_completed": progress.batches_completed,
            "episodes_completed": progress.episodes_completed,
            "accuracies": list(progress.accuracies),
            "rewards": list(progress.rewards),
            "escalation_remaining": self.escalation.remaining,
            "torch_rng": torch.get_rng_state(),
            "env_rng": [rng for _, rng, _ in envs],
            "seeds_grown": [grown for _, _, grown in envs],
        }

    def _setup(self) -> dict[str, Any]:
        """The settings a checkpoint must share with the run that resumes it."""
        return run_setup(self.config)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's state. Every field is checked before any is used;
        CheckpointError names the field that does not fit this run (the caller names
        the checkpoint)."""
        check_setup(state, self._setup())
        saved = read_state(state, self.config.envs)
        if self.agent is not None:
            check_agent_state(state.get("agent"), self.agent.network.state_dict())
        try:
            if self.agent is not None:
                self.agent.load_state_dict(state["agent"])
            torch.set_rng_state(saved.torch_rng)
            for env in self.envs:
                env.rng.set_state(saved.env_rng[env.env_id])
                env.seeds_grown = saved.seeds_grown[env.env_id]
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise CheckpointError(
                f"state does not fit this run: {type(error).__name__} {reason}".strip()
            ) from None
        self.escalation.remaining = saved.escalation_remaining
        telemetry.set_level(self.escalation.level)
        self.progress.batches_completed = saved.batches_completed
        self.progress.episodes_completed = saved.episodes_completed
        self.progress.accuracies.extend(saved.accuracies)
        self.progress.rewards.extend(saved.rewards)

    @property
    def finished(self) -> bool:
        return self.progress.episodes_completed >= self.config.episodes

    def run_batch(self) -> BatchResult:
        """One episode in each active environment, then one PPO update."""
        progress = self.progress
        batch = progress.batches_completed + 1
        active = min(self.config.envs, self.config.episodes - progress.episodes_completed)
        attributes: dict[str, str | int] = {
            names.RUN_ID: self.run_id,
            names.BATCH: batch,
            names.EPISODES_COMPLETED: progress.episodes_completed,
        }
        with self.exchange.batch_span(attributes, self.run_links) as batch_span:
            envs = [env for env in self.envs if env.env_id < active]
            parts = self.exchange.gather(self._run_episodes(batch, envs, active))
            result = self._learn(batch, parts) if self.world.is_leader else None
            weights = self.agent.network.state_dict() if self.agent is not None else None
            shared = self.exchange.share(result, weights, self.escalation.level)
            if not self.world.is_leader:
                self._follow(*shared)
            result = shared[0]
            batch_span.set_attribute(names.AVG_ACCURACY, result.avg_accuracy)
        self.last_batch = result
        return result

    def _learn(self, batch: int, parts: list[Episodes]) -> BatchResult:
        """On rank 0: the batch's episodes from every rank, in env order, recorded and
        learned from."""
        progress = self.progress
        accuracies = [accuracy for part in parts for accuracy in part.accuracies]
        rewards = [total for part in parts for total in part.returns]
        steps = [step for part in parts for step in part.steps]
        buffers = [part.buffer for part in parts if part.buffer is not None]
        progress.episodes_completed += len(accuracies)
        progress.batches_completed = batch
        progress.accuracies.append(fmean(accuracies))
        progress.rewards.append(fmean(rewards))
        result = BatchResult(
            batch,
            progress.episodes_completed,
            fmean(accuracies),
            fmean(rewards),
            fmean(progress.accuracies),
            metrics=None,
            actions=dict(Counter(step.action.name for step in steps)),
        )
        self.reward_hacking.observe(batch, steps, result.avg_reward, result.avg_accuracy)
        if buffers:
            buffer = RolloutBuffer.joined(buffers, self.device)
            result = replace(result, metrics=self._update(buffer, result))
        self.progress_detector.observe(batch, progress.accuracies, result.episodes_completed)
        return result

    def _follow(
        self, result: BatchResult, weights: dict[str, Any] | None, level: TelemetryLevel
    ) -> None:
        """On the other ranks: rank 0's update, weights and telemetry level taken over,
        its result recorded as progress."""
        if self.agent is not None and weights is not None:
            self.agent.network.load_state_dict(weights)
        telemetry.set_level(level)
        progress = self.progress
        progress.episodes_completed = result.episodes_completed
        progress.batches_completed = result.batch
        progress.accuracies.append(result.avg_accuracy)
        progress.rewards.append(result.avg_reward)

    def _run_episodes(self, batch: int, envs: list[HostEnvironment], active: int) -> Episodes:
        """Run one episode per env in lockstep (`active` environments on all ranks)."""
        if not envs:
            return Episodes([], [], None, [])
        hosts = EnvironmentBatch(envs)
        episode_spans = [
            tracer.start_span(names.EPISODE_SPAN, attributes={names.ENV_ID: env.env_id})
            for env in envs
        ]
        try:
            episodes = self._run_epochs(batch, hosts, episode_spans, active)
            for span, accuracy in zip(episode_spans, episodes.accuracies, strict=True):
                span.set_attribute(names.FINAL_ACCURACY, accuracy)
            return episodes
        finally:
            for span in episode_spans:
                span.end()

    def _run_epochs(
        self, batch: int, hosts: EnvironmentBatch, episode_spans: list[Span], active: int
    ) -> Episodes:
        config, agent, envs = self.config, self.agent, hosts.envs
        buffer = agent.new_buffer(len(envs), config.max_epochs - 1) if agent else None
        hidden = agent.initial_hidden(len(envs)) if agent else None
        returns = [0.0] * len(envs)
        accuracies: list[float] = []
        steps: list[StepOutcome] = []
        pending: Decision | None = None
        for epoch in range(1, config.max_epochs + 1):
            epoch_spans = [
                self._epoch_span(env, span, epoch)
                for env, span in zip(envs, episode_spans, strict=True)
            ]
            try:
                hosts.run_epoch(epoch, _in_spans(epoch_spans))
                self.memory.sample(batch, epoch)
                accuracies = [signals(env).val_accuracy for env in envs]
                if pending is not None:
                    contributions = [env.slot.contribution for env in envs]
                    step_rewards = self.controller.rewards(envs, pending, contributions)
                    returns = [total + r for total, r in zip(returns, step_rewards, strict=True)]
                    steps += outcomes(pending, step_rewards, contributions)
                    if buffer is not None:
                        done = float(epoch == config.max_epochs)
                        buffer.add(
                            pending.obs,
                            pending.masks,
                            pending.actions,
                            pending.logprobs,
                            pending.values,
                            torch.tensor(step_rewards, dtype=torch.float32),
                            torch.full((len(envs),), done),
                            pending.hidden,
                        )
                if epoch < config.max_epochs:
                    pending, hidden = self.controller.decide(envs, epoch, hidden, epoch_spans)
                if self.on_epoch is not None:
                    self.on_epoch(active / config.max_epochs)
            finally:
                for env, span in zip(envs, epoch_spans, strict=False):
                    span.set_attribute(names.SEED_STAGE, env.slot.stage.name)
                    span.end()
        return Episodes(accuracies, returns, buffer, steps)

    @staticmethod
    def _epoch_span(env: HostEnvironment, episode_span: Span, epoch: int) -> Span:
        """Env's `esper.epoch` span, left open for the controller's action; the caller
        ends it."""
        return tracer.start_span(
            names.EPOCH_SPAN,
            context=trace.set_span_in_context(episode_span),
            attributes={names.ENV_ID: env.env_id, names.EPOCH: epoch},
        )

    def _update(self, buffer: RolloutBuffer, batch: BatchResult) -> PPOUpdateMetrics:
        """Train the agent on the batch; its anomalies and PPO_UPDATE_COMPLETED are
        emitted on the update's span."""
        assert self.agent is not None
        with tracer.start_as_current_span(names.UPDATE_SPAN):
            collect = self.escalation.level >= TelemetryLevel.DEBUG
            metrics = self.agent.update(buffer, collect_layer_stats=collect)
            self.escalation.tick()
            anomalies = self.detector.check(metrics)
            report(anomalies, metrics)
            if anomalies:
                self.escalation.escalate()
            telemetry.set_level(self.escalation.level)
            self._emit_update(batch, metrics)
            return metrics

    def _emit_update(self, result: BatchResult, metrics: PPOUpdateMetrics) -> None:
        """PPO_UPDATE_COMPLETED: the batch, then every statistic the update reports
        (`layer_grad_stats` only when it was collected)."""
        statistics = asdict(metrics)
        if metrics.layer_grad_stats is None:
            del statistics["layer_grad_stats"]
        data: dict[str, Any] = {
            "batch": result.batch,
            "episodes_completed": result.episodes_completed,
            "avg_accuracy": result.avg_accuracy,
            "avg_reward": result.avg_reward,
            "rolling_avg_accuracy": result.rolling_avg_accuracy,
            **statistics,
        }
        telemetry.emit(
            TelemetryEvent(
                event_type=EventType.PPO_UPDATE_COMPLETED,
                message=f"PPO update {metrics.train_steps}",
                data=data,
            )
        )


def _in_spans(spans: list[Span]) -> Scope:
    """A scope that puts environment i's events on `spans[i]` (left open)."""
    return lambda index: trace.use_span(spans[index], end_on_exit=False)
