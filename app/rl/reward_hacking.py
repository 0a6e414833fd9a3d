"""Reward hacking: the controller's reward parting ways with the accuracy it is meant to buy.

The reward is a proxy. Shaping terms (such as a germination bonus) make it exploitable: a
controller can learn to collect reward, say by germinating and culling in a loop, while
accuracy stands still. `RewardHackingDetector` watches each batch's steps for two signs
and raises REWARD_HACKING_SUSPECTED, once per stretch in which a sign holds:

- trend divergence: over the last `window` batches the mean reward has a significantly
  rising trend (t statistic of its least-squares slope at least `reward_trend_t`) while
  mean accuracy does not (its slope's t statistic at most `accuracy_trend_t`);
- action share: one kind of action (WAIT, GERMINATE, FOSSILIZE, CULL) earns at least
  `share` of the positive reward over the window, at least `share_ratio` times its share
  of the accuracy gained, and more reward than that accuracy is worth (at the reward's
  rate per point), over at least `min_action_steps` steps. The last condition keeps a
  window whose rewards sum to little, all of them paid for, from looking lopsided.

Both events carry the same data: the two trends, the window, the dominant action and its
shares of reward and accuracy.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from dataclasses import dataclass
from statistics import fmean, linear_regression
from typing import Any

from app import telemetry
from app.contracts.actions import Action
from app.contracts.events import EventType, Severity, TelemetryEvent
from app.rl.rewards import REWARD_PER_POINT
from app.settings import check

# Fewer points than this leave a slope without a usable standard error.
_MIN_TREND_POINTS = 3


@dataclass(frozen=True)
class RewardHackingConfig:
    """Thresholds of the reward hacking checks (see the module docstring); `window` is in
    PPO batches."""

    window: int = 8
    reward_trend_t: float = 3.0
    accuracy_trend_t: float = 1.0
    share: float = 0.5
    share_ratio: float = 2.0
    min_action_steps: int = 8

    def __post_init__(self) -> None:
        check(self, "window", ge=_MIN_TREND_POINTS)
        check(self, "share", gt=0, le=1)
        check(self, "share_ratio", "min_action_steps", ge=1)
        check(self, "reward_trend_t", "accuracy_trend_t", finite=True)


@dataclass(frozen=True)
class StepOutcome:
    """One controller step: what it did, the reward it got and the accuracy it bought (pp):
    what the seed's measured contribution to the host's accuracy gained over the step."""

    action: Action
    reward: float
    accuracy_gain: float


@dataclass(frozen=True)
class Trend:
    """Least-squares slope per batch and its t statistic (inf for a perfect line)."""

    slope: float
    t: float


@dataclass(frozen=True)
class ActionShare:
    """One action kind over the window: its steps, its share of the positive reward, its
    share of the positive accuracy gain (sums per kind, a negative sum counted as 0) and
    `unearned`, its reward less what its accuracy gain is worth."""

    steps: int
    reward_share: float
    accuracy_share: float
    unearned: float


def trend(values: list[float]) -> Trend | None:
    """The trend of `values` over consecutive batches; None with too few points."""
    n = len(values)
    if n < _MIN_TREND_POINTS:
        return None
    xs = list(range(n))
    if max(values) == min(values):
        return Trend(0.0, 0.0)
    slope, intercept = linear_regression(xs, values)
    residual = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, values, strict=True))
    middle = fmean(xs)
    spread = sum((x - middle) ** 2 for x in xs)
    error = math.sqrt(residual / (n - 2) / spread)
    if error == 0.0:
        return Trend(slope, math.copysign(math.inf, slope))
    return Trend(slope, slope / error)


def action_kind(action: Action) -> str:
    """GERMINATE for any blueprint, so cycling through blueprints still counts as one."""
    return "GERMINATE" if action.is_germinate else action.name


class RewardHackingDetector:
    """Fed once per batch with every step of its episodes; emits its own events."""

    def __init__(self, config: RewardHackingConfig | None = None) -> None:
        self.config = config or RewardHackingConfig()
        window = self.config.window
        self._rewards: deque[float] = deque(maxlen=window)
        self._accuracies: deque[float] = deque(maxlen=window)
        self._steps: deque[list[StepOutcome]] = deque(maxlen=window)
        self._raised: set[str] = set()

    def observe(
        self, batch: int, steps: list[StepOutcome], avg_reward: float, avg_accuracy: float
    ) -> None:
        """Add one batch: its steps, mean episode reward and mean final accuracy (pp)."""
        self._rewards.append(avg_reward)
        self._accuracies.append(avg_accuracy)
        self._steps.append(steps)
        reward_trend = trend(list(self._rewards))
        accuracy_trend = trend(list(self._accuracies))
        shares = self._shares()
        config = self.config
        diverging = (
            len(self._rewards) == config.window
            and reward_trend is not None
            and accuracy_trend is not None
            and reward_trend.t >= config.reward_trend_t
            and accuracy_trend.t <= config.accuracy_trend_t
        )
        dominant = max(shares.items(), key=lambda item: item[1].reward_share, default=None)
        lopsided = dominant is not None and self._lopsided(dominant[1])
        data: dict[str, Any] = {
            "batch": batch,
            "window": len(self._rewards),
            "reward_trend": None if reward_trend is None else reward_trend.slope,
            "reward_trend_t": None if reward_trend is None else reward_trend.t,
            "accuracy_trend": None if accuracy_trend is None else accuracy_trend.slope,
            "accuracy_trend_t": None if accuracy_trend is None else accuracy_trend.t,
            "dominant_action": None if dominant is None else dominant[0],
            "dominant_share": None if dominant is None else dominant[1].reward_share,
            "dominant_accuracy_share": None if dominant is None else dominant[1].accuracy_share,
            "reward_shares": {kind: share.reward_share for kind, share in shares.items()},
        }
        self._raise_once("trend_divergence", diverging, data)
        self._raise_once("action_share", lopsided, data)

    def _shares(self) -> dict[str, ActionShare]:
        rewards: dict[str, float] = defaultdict(float)
        gains: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        for steps in self._steps:
            for step in steps:
                kind = action_kind(step.action)
                rewards[kind] += step.reward
                gains[kind] += step.accuracy_gain
                counts[kind] += 1
        total_reward = sum(max(r, 0.0) for r in rewards.values())
        total_gain = sum(max(g, 0.0) for g in gains.values())
        return {
            kind: ActionShare(
                counts[kind],
                max(rewards[kind], 0.0) / total_reward if total_reward else 0.0,
                max(gains[kind], 0.0) / total_gain if total_gain else 0.0,
                rewards[kind] - REWARD_PER_POINT * gains[kind],
            )
            for kind in counts
        }

    def _lopsided(self, share: ActionShare) -> bool:
        config = self.config
        return (
            share.steps >= config.min_action_steps
            and share.reward_share >= config.share
            and share.reward_share >= config.share_ratio * share.accuracy_share
            and share.unearned > 0
        )

    def _raise_once(self, kind: str, holds: bool, data: dict[str, Any]) -> None:
        if not holds:
            self._raised.discard(kind)
            return
        if kind in self._raised:
            return
        self._raised.add(kind)
        telemetry.emit(
            TelemetryEvent(
                event_type=EventType.REWARD_HACKING_SUSPECTED,
                message=_message(kind, data),
                data={"kind": kind, **data},
                severity=Severity.WARNING,
            )
        )


def _message(kind: str, data: dict[str, Any]) -> str:
    if kind == "trend_divergence":
        return (
            f"reward rising ({data['reward_trend']:+.4f}/batch, t={data['reward_trend_t']:.1f}) "
            f"while accuracy is not ({data['accuracy_trend']:+.2f} pp/batch) "
            f"over {data['window']} batches"
        )
    return (
        f"{data['dominant_action']} earns {data['dominant_share']:.0%} of the reward but "
        f"{data['dominant_accuracy_share']:.0%} of the accuracy gained "
        f"over {data['window']} batches"
    )
