"""The fold behind `esper report`: what it makes of real log files (one file, a rotated
set, two ranks, the original system's log, corrupt lines, events missing fields)."""

from __future__ import annotations

import math
from pathlib import Path

from report_logs import (
    Clock,
    epoch_done,
    folded,
    seed_event,
    two_batches,
    update,
    write_ranks,
    write_run,
)

from app.contracts.events import EventType, Severity
from instrumentation.report.history import RunHistory

# env, seed, stage, first epoch, last epoch: the swimlane of `two_batches`. Episodes are 5
# epochs (run.json), so batch 2's epochs are 6 to 10 and its live seed ends at 10; the
# embargo of batch 1 ends with its episode, at 5.
SEGMENTS = {
    (0, "env0_seed_0", "GERMINATED", 1, 1),
    (0, "env0_seed_0", "TRAINING", 1, 2),
    (0, "env0_seed_0", "BLENDING", 2, 3),
    (1, "env1_seed_0", "GERMINATED", 2, 2),
    (1, "env1_seed_0", "TRAINING", 2, 3),
    (1, "env1_seed_0", "EMBARGOED", 4, 5),
    (0, "env0_seed_1", "GERMINATED", 7, 7),
    (0, "env0_seed_1", "TRAINING", 7, 10),
}
ENDS = {(0, "env0_seed_0", "fossilized", 3), (1, "env1_seed_0", "culled", 3)}


def _segments(history: RunHistory) -> set[tuple[int, str, str, int | None, int | None]]:
    return {
        (s.env_id, s.seed_id, s.stage, s.start.epoch, s.end.epoch) for s in history.seeds.segments
    }


def _ends(history: RunHistory) -> set[tuple[int, str, str, int | None]]:
    return {(e.env_id, e.seed_id, e.outcome, e.at.epoch) for e in history.seeds.ends}


def _anomalies(history: RunHistory) -> dict[tuple[int | None, str], int]:
    return {key: mark.count for key, mark in history.anomalies.items()}


def test_batches_anomalies_and_swimlane_of_a_run(tmp_path: Path) -> None:
    history = folded(write_run(tmp_path, two_batches()))

    assert history.batches.batches == [1, 2]
    assert history.batches.values["rolling_avg_accuracy"] == [50.0, 51.0]
    assert history.batches.values["ratio_max"] == [6.1, 1.3]
    assert history.batches.values["value_loss"] == [0.5, None]  # "NaN" in the log
    assert _anomalies(history) == {
        (1, "RATIO_EXPLOSION_DETECTED"): 1,  # just before batch 1's update
        (2, "GRADIENT_ANOMALY"): 1,  # during batch 2's episodes
        (1, "REWARD_HACKING_SUSPECTED"): 1,  # after batch 2's update, naming batch 1
    }
    assert history.anomalies[(1, "RATIO_EXPLOSION_DETECTED")].detail == "ratio_max=6.100 > 5.0"
    assert _segments(history) == SEGMENTS
    assert _ends(history) == ENDS
    assert history.seeds.has_epochs
    assert history.seeds.germinated == {"conv_light": 1, "depthwise": 1, "norm": 1}
    assert history.seeds.fossilized == {"conv_light": 1}
    assert history.seeds.culled == {"depthwise": 1}
    assert history.seeds.episode_accuracy == {0: [(1, 44.0), (2, 54.0)], 1: [(1, 34.0), (2, 39.0)]}
    assert history.events == len(two_batches())
    assert history.ranks == {None}
    assert history.skipped == {}
    assert history.type_severity["GRADIENT_ANOMALY"] is Severity.WARNING


def test_without_run_json_episodes_are_as_long_as_their_epochs(tmp_path: Path) -> None:
    run = write_run(tmp_path, two_batches())
    (run / "run.json").unlink()

    history = folded(run)

    # 4 logged epochs an episode: batch 2's epochs are 5 to 8, batch 1's embargo is cut
    # at its episode's last epoch (4), where it began.
    assert (0, "env0_seed_1", "TRAINING", 6, 8) in _segments(history)
    assert (1, "env1_seed_0", "EMBARGOED", 4, 4) in _segments(history)


def test_a_rotated_log_folds_as_one_file(tmp_path: Path) -> None:
    whole = folded(write_run(tmp_path / "whole", two_batches()))
    run = write_run(tmp_path / "rotated", two_batches(), max_bytes=1024)
    assert len(list(run.glob("events.jsonl.*"))) > 3

    rotated = folded(run)

    assert _segments(rotated) == _segments(whole) == SEGMENTS
    assert _anomalies(rotated) == _anomalies(whole)
    assert rotated.batches == whole.batches
    assert rotated.by_type == whole.by_type


def test_two_ranks_merge_into_one_swimlane(tmp_path: Path) -> None:
    run = write_ranks(tmp_path, two_batches())
    assert (run / "events-rank1.jsonl").is_file()

    for path in (run, run / "events.jsonl", run / "events-rank1.jsonl"):
        history = folded(path)
        assert history.ranks == {0, 1}
        assert _segments(history) == SEGMENTS
        assert _ends(history) == ENDS
        assert history.batches.batches == [1, 2]
        assert history.events == len(two_batches())


def test_the_legacy_log_is_drawn_in_time(legacy_log: Path) -> None:
    history = folded(legacy_log)

    assert history.events == 170
    assert history.batches.batches == [1, 2, 3]
    assert _anomalies(history) == {(b, "VALUE_COLLAPSE_DETECTED"): 1 for b in (1, 2, 3)}
    seeds = history.seeds
    assert not seeds.has_epochs
    assert seeds.env_ids == [0, 1, 2, 3]
    assert sum(seeds.germinated.values()) == 27
    assert [e.outcome for e in seeds.ends].count("fossilized") == 4
    assert [e.outcome for e in seeds.ends].count("culled") == 17
    assert all(s.end.seconds >= s.start.seconds for s in seeds.segments)
    assert {s.seed_id for s in seeds.segments} >= {e.seed_id for e in seeds.ends}
    assert history.skipped == {}


def test_stabilization_ends_an_earlier_episodes_seed_when_the_log_has_no_epochs(
    tmp_path: Path,
) -> None:
    c = Clock()
    changed, stabilized = EventType.SEED_STAGE_CHANGED, EventType.TAMIYO_INITIATED
    events = [
        c.event(stabilized, {"env_id": 0}, epoch=None),
        c.event(EventType.SEED_GERMINATED, {"env_id": 0}, seed_id="env0_seed_0"),
        c.event(changed, {"env_id": 0, "to": "TRAINING"}, seed_id="env0_seed_0"),
        c.event(changed, {"env_id": 0, "to": "BLENDING"}, seed_id="env0_seed_0"),  # tick 4
        c.event(stabilized, {"env_id": 1}),  # another environment: no effect on env 0
        c.event(stabilized, {"env_id": 0}),  # tick 6: env 0's next episode
        c.event(EventType.SEED_GERMINATED, {"env_id": 0}, seed_id="env0_seed_1"),
    ]

    history = folded(write_run(tmp_path, events))

    def span(stage: str, seed_id: str) -> tuple[float, float]:
        (segment,) = [
            s for s in history.seeds.segments if s.stage == stage and s.seed_id == seed_id
        ]
        return segment.start.seconds - origin, segment.end.seconds - origin

    origin = events[0].timestamp.timestamp() - 1  # tick 0
    assert span("TRAINING", "env0_seed_0") == (3, 4)
    # Ended at env 0's last event before its next stabilization, not at that one (6).
    assert span("BLENDING", "env0_seed_0") == (4, 4)
    assert span("GERMINATED", "env0_seed_1") == (7, 7)
    assert not history.seeds.has_epochs


def test_corrupt_lines_are_counted_and_the_rest_folded(tmp_path: Path) -> None:
    run = write_run(tmp_path, two_batches())
    log = run / "events.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join([lines[0], b"{not json\n", *lines[1:], b'{"event_type": 1}\n']))

    history = folded(run)

    assert history.unreadable == 2
    assert history.unreadable_examples[0].startswith(f"{log}:2: invalid JSON")
    assert history.events == len(two_batches())
    assert _segments(history) == SEGMENTS


def test_events_missing_what_a_chart_needs_are_left_out_of_it_and_counted(
    tmp_path: Path,
) -> None:
    c = Clock()
    events = [
        seed_event(c, EventType.SEED_GERMINATED, 0, "env0_seed_0", 1, blueprint_id="norm"),
        c.event(EventType.SEED_GERMINATED, {"blueprint_id": "norm"}, seed_id="x", epoch=1),
        c.event(EventType.SEED_STAGE_CHANGED, {"env_id": "0", "to": "TRAINING"}, epoch=2),
        seed_event(c, EventType.SEED_STAGE_CHANGED, 0, "env0_seed_0", 2, to="GROWING"),
        seed_event(c, EventType.SEED_STAGE_CHANGED, 0, "env0_seed_0", 2),
        c.event(EventType.SEED_CULLED, {"env_id": 0}, epoch=3),
        c.event(EventType.EPOCH_COMPLETED, {"env_id": 0, "val_accuracy": "NaN"}, epoch=3),
        c.event(EventType.PPO_UPDATE_COMPLETED, {"avg_accuracy": 50.0}),
        c.event(EventType.PPO_UPDATE_COMPLETED, {"batch": True}),
        c.event(EventType.MEMORY_WARNING, {}, severity=Severity.WARNING),
    ]

    history = folded(write_run(tmp_path, events))

    assert history.skipped == {
        "swimlane: SEED_GERMINATED with no integer env_id": 1,
        "swimlane: SEED_STAGE_CHANGED with no integer env_id": 1,
        "swimlane: SEED_STAGE_CHANGED with no known stage in `to`": 2,
        "swimlane: SEED_CULLED with no seed id": 1,
        "final accuracy per episode: EPOCH_COMPLETED without a numeric val_accuracy": 1,
        "batches: PPO_UPDATE_COMPLETED without an integer batch": 2,
    }
    assert history.events == len(events)
    assert history.batches.batches == []
    assert _segments(history) == {(0, "env0_seed_0", "GERMINATED", 1, 5)}
    assert _anomalies(history) == {(None, "MEMORY_WARNING"): 1}  # no update follows it
    assert history.seeds.germinated == {"norm": 2}  # counted, drawn or not
    assert history.seeds.culled == {"unknown": 1}


def test_non_finite_and_missing_statistics_are_gaps(tmp_path: Path) -> None:
    c = Clock()
    events = [
        epoch_done(c, 0, 1, 40.0),
        c.event(EventType.PPO_UPDATE_COMPLETED, {"batch": 1, "entropy": "Infinity"}),
        c.event(EventType.PPO_UPDATE_COMPLETED, {"batch": 2, "entropy": math.pi}),
    ]

    history = folded(write_run(tmp_path, events))

    assert history.batches.values["entropy"] == [None, math.pi]
    assert history.batches.values["policy_loss"] == [None, None]
    assert history.batches.last("entropy") == math.pi
    assert history.batches.last("policy_loss") is None


def test_an_anomaly_without_a_batch_takes_the_next_updates(tmp_path: Path) -> None:
    c = Clock()
    warning = Severity.WARNING
    memory, gradient = EventType.MEMORY_WARNING, EventType.GRADIENT_ANOMALY
    events = [  # a run resumed after batch 10: its first update is batch 11
        c.event(memory, {"detail": "first, before batch 11"}, severity=warning),
        c.event(gradient, {"batch": 12, "detail": "names batch 12"}, severity=warning),
        update(c, 11),
        c.event(memory, {"detail": "during batch 12"}, severity=warning),
        c.event(gradient, {"detail": "during batch 12, after one naming it"}, severity=warning),
        c.event(gradient, {"detail": "also during batch 12"}, severity=warning),
        update(c, 12),
        c.event(memory, {"detail": "after the last update"}, severity=warning),
    ]

    history = folded(write_run(tmp_path, events))

    assert _anomalies(history) == {
        (11, "MEMORY_WARNING"): 1,
        (12, "MEMORY_WARNING"): 1,
        (12, "GRADIENT_ANOMALY"): 3,
        (None, "MEMORY_WARNING"): 1,
    }
    assert history.anomalies[(12, "GRADIENT_ANOMALY")].detail == "names batch 12"
    assert history.anomalies[(None, "MEMORY_WARNING")].detail == "after the last update"
    assert history.anomaly_counts == {"MEMORY_WARNING": 3, "GRADIENT_ANOMALY": 3}


def test_held_anomalies_keep_the_first_ones_detail_when_merged(tmp_path: Path) -> None:
    c = Clock()
    warning = Severity.WARNING
    events = [
        c.event(EventType.MEMORY_WARNING, {"detail": "held, first"}, severity=warning),
        c.event(EventType.MEMORY_WARNING, {"batch": 3, "detail": "named"}, severity=warning),
        update(c, 3),
    ]

    history = folded(write_run(tmp_path, events))

    assert _anomalies(history) == {(3, "MEMORY_WARNING"): 2}
    assert history.anomalies[(3, "MEMORY_WARNING")].detail == "held, first"


def test_a_log_without_updates_has_its_anomalies_in_no_batch(tmp_path: Path) -> None:
    events = [e for e in two_batches() if e.event_type is not EventType.PPO_UPDATE_COMPLETED]

    history = folded(write_run(tmp_path, events))

    assert _anomalies(history) == {
        (None, "RATIO_EXPLOSION_DETECTED"): 1,
        (None, "GRADIENT_ANOMALY"): 1,
        (1, "REWARD_HACKING_SUSPECTED"): 1,  # it names its batch
    }
