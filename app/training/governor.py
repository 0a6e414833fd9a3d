"""The governor (Tolaria's safety net): catches a catastrophic host loss and rolls back.

After each healthy epoch the trainer hands the governor a snapshot (host and seed weights,
and the optimizers whose state should roll back with them). When a validation loss is
not finite or spikes far above the recent healthy ones, `rollback` restores the last
snapshot and culls the live seed, the likeliest culprit, with reason `governor_rollback`.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor

from app.model.host import HostCNN

ROLLBACK_REASON = "governor_rollback"


class Restorable(Protocol):
    """Optimizer state that rolls back with the weights (a torch optimizer, or one
    environment's share of the stacked hosts' optimizer)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class _Snapshot:
    host_weights: dict[str, Tensor]
    seed_id: str | None
    seed_weights: dict[str, Tensor] | None
    optimizer_states: tuple[tuple[Restorable, dict[str, Any]], ...]


def _clone(state: dict[str, Any]) -> dict[str, Tensor]:
    return {key: value.detach().clone() for key, value in state.items()}


class Governor:
    """Detects a catastrophic validation loss and restores the last good host state.

    A loss is catastrophic when it is not finite, or, once `min_history` healthy losses
    are known, when it exceeds `spike_factor` times the mean of the last `window` of them.
    """

    def __init__(
        self, host: HostCNN, spike_factor: float = 3.0, window: int = 5, min_history: int = 3
    ) -> None:
        if not spike_factor > 1.0:
            raise ValueError(f"spike_factor must be greater than 1, got {spike_factor}")
        if not 1 <= min_history <= window:
            raise ValueError(
                f"min_history must be between 1 and window ({window}), got {min_history}"
            )
        self._host = host
        self._spike_factor = spike_factor
        self._min_history = min_history
        self._healthy: deque[float] = deque(maxlen=window)
        self._snapshot: _Snapshot | None = None

    def snapshot(
        self, val_loss: float | None = None, optimizers: Sequence[Restorable] = ()
    ) -> None:
        """Keep the current weights (and `optimizers`' state) as the last good state.

        Call it once before training (no loss yet) and after every epoch that `check`
        passed, with that epoch's loss. Optimizers not handed in keep their state on a
        rollback; reset those yourself if stale moments should not survive it.
        """
        if val_loss is not None:
            if not math.isfinite(val_loss):
                raise ValueError(f"a snapshot needs a healthy loss, got {val_loss}")
            self._healthy.append(val_loss)
        seed = self._host.slot.seed
        self._snapshot = _Snapshot(
            host_weights=_clone(self._host.host_state_dict()),
            seed_id=self._host.slot.seed_id,
            seed_weights=None if seed is None else _clone(seed.state_dict()),
            optimizer_states=tuple((opt, copy.deepcopy(opt.state_dict())) for opt in optimizers),
        )

    def check(self, val_loss: float) -> bool:
        """Whether `val_loss` is catastrophic; changes nothing."""
        if not math.isfinite(val_loss):
            return True
        if len(self._healthy) < self._min_history:
            return False
        mean = sum(self._healthy) / len(self._healthy)
        return val_loss > self._spike_factor * mean

    def rollback(self) -> bool:
        """Cull the live seed, if any, and restore the last snapshot in place (parameter
        objects stay the same, so optimizers keep pointing at them).

        Returns whether a seed was culled, i.e. whether the seed optimizer is now stale.
        Raises RuntimeError if no snapshot was taken.
        """
        snapshot = self._snapshot
        if snapshot is None:
            raise RuntimeError("governor rollback without a snapshot; snapshot before training")
        slot = self._host.slot
        culled = slot.is_active and slot.cull(ROLLBACK_REASON)
        seed_weights = self._seed_weights(snapshot)
        self._host.load_host_state_dict(snapshot.host_weights)
        if slot.seed is not None and seed_weights is not None:
            slot.seed.load_state_dict(seed_weights)
        for optimizer, state in snapshot.optimizer_states:
            optimizer.load_state_dict(copy.deepcopy(state))
        return culled

    def _seed_weights(self, snapshot: _Snapshot) -> dict[str, Tensor] | None:
        """The snapshot's weights for the seed still in the slot after the cull (only a
        fossilized one can be); checked before anything is restored."""
        slot = self._host.slot
        if slot.seed is None:
            return None
        if slot.seed_id != snapshot.seed_id or snapshot.seed_weights is None:
            raise RuntimeError(f"seed {slot.seed_id} appeared after the last snapshot")
        return snapshot.seed_weights
