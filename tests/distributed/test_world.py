"""The split of a run's environments between ranks, and the world of one process."""

from __future__ import annotations

import pytest

from app.distributed.world import SINGLE, World


@pytest.mark.parametrize("size", [1, 2, 3, 4])
@pytest.mark.parametrize("envs", [4, 5, 7, 9])
def test_the_ranks_share_every_environment_once_in_contiguous_blocks(size: int, envs: int) -> None:
    shares = [World(rank, size).env_ids(envs) for rank in range(size)]
    assert [env for share in shares for env in share] == list(range(envs))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_the_world_of_one_process_exchanges_nothing() -> None:
    value = {"a": [1, 2]}
    assert SINGLE.broadcast(value, "x") is value
    assert SINGLE.gather(value, "x") == [value]
    assert SINGLE.is_leader and SINGLE.env_ids(3) == range(3)
