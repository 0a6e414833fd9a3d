"""The processes of one training, as torchrun starts them, and the collectives they meet in.

`torchrun --nproc-per-node N -m app train ...` starts N processes with RANK, WORLD_SIZE,
LOCAL_RANK and the rendezvous in their environment; `join` turns those into a `World`
and, for more than one process, joins the process group (gloo on the CPU, nccl on CUDA).
A plain `esper train` is the world of one, whose collectives hand their argument back.

The environments are split between the ranks in contiguous blocks. Rank 0 is the learner:
the other ranks send it their episodes' rollouts, it runs the one PPO update of the batch
and sends every rank the new weights. The policy is a few thousand parameters and a
batch's rollout a few hundred steps, so shipping both costs less than one host epoch, and
the update is exactly the one a single process would make: the same minibatches, the same
advantage normalization over the whole batch. All-reducing gradients instead would spread
the minibatches over the ranks and pay a collective per minibatch.

Every collective runs under the process group's timeout: a rank that died makes the
others fail within it, with `LostRankError`, instead of waiting forever.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from app.distributed import DEFAULT_TIMEOUT_S

T = TypeVar("T")


class LostRankError(RuntimeError):
    """A collective failed: another rank died, or did not answer within the timeout."""


@dataclass(frozen=True)
class World:
    """This process's place in the training: rank `rank` of `size`, `local_rank` on its
    node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_leader(self) -> bool:
        """Rank 0: the learner, the console and the run's own files."""
        return self.rank == 0

    def env_ids(self, envs: int) -> range:
        """This rank's environments out of `envs`: a contiguous block, the first
        `envs % size` ranks holding one more."""
        base, extra = divmod(envs, self.size)
        start = self.rank * base + min(self.rank, extra)
        return range(start, start + base + (self.rank < extra))

    def broadcast(self, value: T, what: str) -> T:
        """Rank 0's `value`, on every rank (`what` names it in an error)."""
        if self.size == 1:
            return value
        box: list[Any] = [value]
        self._collective(what, lambda: dist.broadcast_object_list(box, src=0))
        return box[0]  # type: ignore[no-any-return]

    def gather(self, value: T, what: str) -> list[T]:
        """Every rank's `value` in rank order, on rank 0; an empty list elsewhere."""
        if self.size == 1:
            return [value]
        found: list[Any] = [None] * self.size if self.is_leader else []
        self._collective(
            what, lambda: dist.gather_object(value, found if self.is_leader else None, dst=0)
        )
        return found

    def all_gather(self, value: T, what: str) -> list[T]:
        """Every rank's `value` in rank order, on every rank."""
        if self.size == 1:
            return [value]
        found: list[Any] = [None] * self.size
        self._collective(what, lambda: dist.all_gather_object(found, value))
        return found

    def _collective(self, what: str, run: Any) -> None:
        try:
            run()
        except RuntimeError as error:  # torch.distributed.DistBackendError included
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise LostRankError(
                f"rank {self.rank} of {self.size}: {what} failed, another rank stopped "
                f"answering ({type(error).__name__}: {reason})"
            ) from None


SINGLE = World()


def join(device: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> World:
    """This process's World, from torchrun's environment; with more than one process, the
    process group is joined (gloo on the CPU, nccl on CUDA, each rank on the GPU of its
    local rank)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return SINGLE
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    backend = "gloo"
    if torch.device(device).type == "cuda":
        backend = "nccl"
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return world


def leave(world: World) -> None:
    """Leave the process group, if this process joined one."""
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
