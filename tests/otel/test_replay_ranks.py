"""`esper replay` of a run trained by two processes: the run directory (or rank 0's log)
replays both ranks' logs merged in time, so that rank 1's episodes land in the trace of
the batch whose update they fed, exported over OTLP to an in-process receiver."""

from __future__ import annotations

from collections import Counter

import pytest
from receivers import attributes_of
from replay_runs import RankRun, Replayed, original_ns, replay, write_two_rank_run

from app.contracts import telemetry_names as names


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory: pytest.TempPathFactory) -> RankRun:
    return write_two_rank_run(tmp_path_factory.mktemp("telemetry") / "telemetry_2026-01-05_120000")


@pytest.fixture(scope="module", params=["run directory", "events.jsonl"])
def replayed(request: pytest.FixtureRequest, two_rank_run: RankRun) -> Replayed:
    """The run replayed from its directory, or from rank 0's log beside rank 1's."""
    path = two_rank_run.path
    if request.param == "events.jsonl":
        path = path / "events.jsonl"
    return replay("http/protobuf", [str(path)])


def test_every_event_of_every_rank_arrives_with_its_original_timestamp(
    replayed: Replayed, two_rank_run: RankRun
) -> None:
    assert replayed.code == 0, replayed.stderr
    assert f"{len(two_rank_run.records)} replayed from 3 file(s)" in replayed.stderr
    assert "ranks:     2 ranks' logs, merged in timestamp order" in replayed.stderr
    assert Counter(record["rank"] for record in two_rank_run.records) == {0: 18, 1: 16}
    assert replayed.event_times() == Counter(
        (record["event_id"], original_ns(record)) for record in two_rank_run.records
    )


def test_each_batch_is_one_trace_holding_every_ranks_episodes(
    replayed: Replayed, two_rank_run: RankRun
) -> None:
    roots = replayed.spans(names.BATCH_SPAN)
    assert sorted(attributes_of(root.attributes)[names.BATCH] for root in roots) == [1, 2]
    assert {attributes_of(root.attributes)[names.RUN_ID] for root in roots} == {"two-ranks"}
    exported = replayed.span_events()
    by_id = {span.span_id: span for span in replayed.spans()}
    update_trace = {
        two_rank_run.batch_of[record["event_id"]]: exported[record["event_id"]][0].trace_id
        for record in two_rank_run.records
        if record["event_type"] == "PPO_UPDATE_COMPLETED"
    }
    for record in two_rank_run.records:
        if record["event_type"] == "PPO_UPDATE_COMPLETED":
            continue
        span, _ = exported[record["event_id"]]
        assert span.name == names.EPOCH_SPAN
        assert attributes_of(span.attributes)[names.EPOCH] == record["epoch"]
        episode = by_id[span.parent_span_id]
        assert episode.name == names.EPISODE_SPAN
        assert attributes_of(episode.attributes)[names.ENV_ID] == record["data"]["env_id"]
        assert span.trace_id == update_trace[two_rank_run.batch_of[record["event_id"]]]


def test_each_episode_span_holds_one_env_of_one_batch(replayed: Replayed) -> None:
    episodes = Counter(
        (span.trace_id, attributes_of(span.attributes)[names.ENV_ID])
        for span in replayed.spans(names.EPISODE_SPAN)
    )
    assert len(episodes) == 2 * 4
    assert set(episodes.values()) == {1}
