"""One training across two processes under torchrun (gloo, on this machine's CPU):
the same learning as one process, one trace per batch holding every rank's spans, every
log line accounted for, and bounded stops when a rank dies, hangs or is told to stop."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from e2e_runs import ENDLESS, SHORT_RUN, Training, only_run_dir, torchrun, train_to_the_end
from receivers import BlackHole, HttpReceiver, attributes_of

from app.contracts import telemetry_names as names
from instrumentation.otel import DEFAULT_SHUTDOWN_TIMEOUT_S

# Four environments, two batches of 4 x 6 epochs: ranks 0 and 1 step two each.
ARGS = (*SHORT_RUN, "--envs", "4", "--episodes", "8", "--threads", "1")
# Data fields in percentage points of validation accuracy: they move by whole samples.
POINTS = ("accuracy", "counterfactual", "improvement", "delta", "contribution")
# A validation sample of the synthetic dataset, in percentage points.
SAMPLE = 100 / 96
HTTP = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
UPDATE_STATISTICS = (
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clip_fraction",
    "ratio_max",
    "ratio_min",
)


@dataclass(frozen=True)
class ExportedRun:
    """A two-rank run of ARGS to its end, exported to an OTLP/HTTP receiver."""

    telemetry_dir: Path
    stderr: str
    wall_s: float
    receiver: HttpReceiver


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> ExportedRun:
    """Shared by the tests that read a finished two-rank run: each run costs seconds of
    start-up, and the suite's time is bounded. Over OTLP/HTTP (both protocols carry the
    same spans: test_otlp_export.py)."""
    telemetry_dir = tmp_path_factory.mktemp("two-ranks") / "telemetry"
    receiver = HttpReceiver().start()
    started = time.perf_counter()
    try:
        done = train_to_the_end(
            ARGS,
            telemetry_dir,
            {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, **HTTP},
            command=torchrun(2),
        )
    finally:
        receiver.stop()
    assert done.returncode == 0, done.stderr
    return ExportedRun(telemetry_dir, done.stderr, time.perf_counter() - started, receiver)


def records(run_dir: Path) -> list[dict[str, Any]]:
    """Every line of every rank's log in the run directory."""
    return [
        json.loads(line)
        for path in sorted(run_dir.glob("events*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]


def first_batch(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lines of the first batch's trace, the trace of the first PPO update."""
    update = next(line for line in lines if line["event_type"] == "PPO_UPDATE_COMPLETED")
    return [line for line in lines if line.get("trace_id") == update["trace_id"]]


def by_env(lines: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {}
    for line in sorted(lines, key=lambda line: line["timestamp"]):
        if "env_id" in line["data"]:
            found.setdefault(line["data"]["env_id"], []).append(line)
    return found


def numbers_and_facts(data: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of every leaf of an event's data."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from numbers_and_facts(value, f"{path}.{key}")
    else:
        yield path, data


@pytest.mark.slow
def test_two_ranks_learn_what_one_process_learns(tmp_path: Path, two_ranks: ExportedRun) -> None:
    """The first batch's events are the same events, each environment's in the same
    order with the same seeds, stages, actions and outcomes. Their numbers agree within
    tolerances: an environment's numbers depend on how many hosts are stacked beside it
    through rounding alone (the stacked kernels sum in another order), which training
    amplifies. By the episode's end losses agree within 1% (seen: 5e-4) and accuracies
    within four validation samples (seen: two); the first update's statistics within 10%
    or 0.02."""
    single = train_to_the_end(ARGS, tmp_path / "telemetry")
    assert single.returncode == 0, single.stderr

    alone = records(only_run_dir(tmp_path / "telemetry"))
    split = records(only_run_dir(two_ranks.telemetry_dir))
    assert all("rank" not in line for line in alone)
    for line in split:
        env = line["data"].get("env_id")
        assert env is None or line["rank"] == env // 2, line

    expected, found = by_env(first_batch(alone)), by_env(first_batch(split))
    assert sorted(found) == sorted(expected) == [0, 1, 2, 3]
    for env, lines in expected.items():
        events = [(line["event_type"], line["epoch"], line["seed_id"]) for line in lines]
        assert [(x["event_type"], x["epoch"], x["seed_id"]) for x in found[env]] == events
        for want, got in zip(lines, found[env], strict=True):
            for (path, value), (other_path, other) in zip(
                numbers_and_facts(want["data"]), numbers_and_facts(got["data"]), strict=True
            ):
                assert path == other_path
                if path.endswith("duration_s"):
                    continue
                if isinstance(value, float) and any(word in path for word in POINTS):
                    assert other == pytest.approx(value, abs=4 * SAMPLE), (env, path)
                elif isinstance(value, float):
                    assert other == pytest.approx(value, rel=1e-2, abs=1e-6), (env, path)
                else:
                    assert other == value, (env, path)

    [update, *_] = [x for x in alone if x["event_type"] == "PPO_UPDATE_COMPLETED"]
    [same, *_] = [x for x in split if x["event_type"] == "PPO_UPDATE_COMPLETED"]
    for key in UPDATE_STATISTICS:
        assert same["data"][key] == pytest.approx(update["data"][key], rel=0.1, abs=0.02), key
    assert same["rank"] == 0


def spans_with_ranks(receiver: HttpReceiver) -> list[tuple[int, Any]]:
    """Every exported span with the `esper.rank` of the resource that sent it."""
    with receiver.lock:
        requests = list(receiver.trace_requests)
    return [
        (attributes_of(resource_spans.resource.attributes)["esper.rank"], span)
        for request in requests
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


@pytest.mark.slow
def test_one_trace_per_batch_holds_every_rank_and_every_log_line(two_ranks: ExportedRun) -> None:
    receiver = two_ranks.receiver
    spans = spans_with_ranks(receiver)
    ids = {span.span_id for _, span in spans}
    orphans = [
        span.name for _, span in spans if span.parent_span_id and span.parent_span_id not in ids
    ]
    assert not orphans, orphans

    traces: dict[bytes, list[tuple[int, Any]]] = {}
    for rank, span in spans:
        traces.setdefault(span.trace_id, []).append((rank, span))
    batches = [t for t in traces.values() if any(s.name == "esper.batch" for _, s in t)]
    assert len(batches) == 2
    for trace in batches:
        [(root_rank, root)] = [(r, s) for r, s in trace if s.name == "esper.batch"]
        assert root_rank == 0 and not root.parent_span_id
        episodes = {
            attributes_of(s.attributes)["esper.env_id"]: (r, s)
            for r, s in trace
            if s.name == "esper.episode"
        }
        assert {env: r for env, (r, _) in episodes.items()} == {0: 0, 1: 0, 2: 1, 3: 1}
        assert all(s.parent_span_id == root.span_id for _, s in episodes.values())
        assert [r for r, s in trace if s.name == "esper.ppo.update"] == [0]

    with receiver.lock:
        resources = [
            attributes_of(rs.resource.attributes)
            for request in receiver.trace_requests
            for rs in request.resource_spans
        ]
    instances = {(r["esper.rank"], r["service.instance.id"], r["esper.run_id"]) for r in resources}
    run_id = json.loads((only_run_dir(two_ranks.telemetry_dir) / "run.json").read_text())["run_id"]
    assert instances == {(0, f"{run_id}-0", run_id), (1, f"{run_id}-1", run_id)}

    # Every line of both logs is a span event on the span the line names.
    events = {
        (span.trace_id.hex(), span.span_id.hex(), attributes_of(event.attributes)["esper.event.id"])
        for _, span in spans
        for event in span.events
    }
    lines = records(only_run_dir(two_ranks.telemetry_dir))
    assert {line["rank"] for line in lines} == {0, 1}
    assert {(x["trace_id"], x["span_id"], x["event_id"]) for x in lines} == events
    assert len(lines) == len(events)
    assert summary_events(two_ranks.stderr) == len(lines)

    # ... and a log record of its rank, correlated with the same span.
    with receiver.lock:
        logged = [
            (
                attributes_of(rl.resource.attributes)[names.RANK],
                record.trace_id.hex(),
                record.span_id.hex(),
                attributes_of(record.attributes)[names.EVENT_ID],
            )
            for request in receiver.log_requests
            for rl in request.resource_logs
            for scope in rl.scope_logs
            for record in scope.log_records
        ]
    assert len(logged) == len(lines)
    assert set(logged) == {(x["rank"], x["trace_id"], x["span_id"], x["event_id"]) for x in lines}


def rank_process(run: Training, rank: int) -> psutil.Process:
    """The process of `rank` among torchrun's children."""
    for child in psutil.Process(run.process.pid).children():
        if child.environ().get("RANK") == str(rank):
            return child
    raise AssertionError(f"no rank {rank} under torchrun:\n{run.stderr}")


def endless(tmp_path: Path, training: list[Training], *more: str) -> Training:
    """A two-rank run that goes on until a test stops it, once its first batch is done."""
    run = Training(
        [*ARGS, *ENDLESS, "--telemetry-dir", str(tmp_path / "telemetry"), *more],
        cwd=tmp_path,
        command=torchrun(2),
    )
    training.append(run)
    run.wait_for_line("ppo update: batch=1 ", timeout=120)
    return run


def whole_lines(path: Path) -> int:
    """How many lines the log holds; fails on a torn or unparsable one."""
    text = path.read_text(encoding="utf-8")
    assert not text or text.endswith("\n"), f"{path} ends inside a line"
    return sum(1 for line in text.splitlines() if json.loads(line))


def summary_events(stderr: str) -> int:
    return int(stderr.split("  events:    ", 1)[1].split(" ", 1)[0])


@pytest.mark.slow
def test_a_killed_rank_stops_the_others_within_bounds_naming_it(
    tmp_path: Path, training: list[Training]
) -> None:
    run = endless(tmp_path, training)
    rank_process(run, 1).kill()
    killed = time.monotonic()
    assert run.wait(timeout=60) != 0
    assert time.monotonic() - killed < 30
    report = run.stderr.split("Root Cause", 1)[1]
    assert "rank      : 1 (local_rank: 1)" in report and "SIGKILL" in report, run.stderr
    assert "  rank 1 sent no summary: its counts are left out" in run.stderr
    # Rank 0 stopped, at torchrun's SIGTERM or at the broken exchange, whichever came
    # first, and flushed its log whole.
    stopped = ("esper: training terminated (SIGTERM)", "esper: training stopped: rank 0 of 2:")
    assert any(line in run.stderr for line in stopped), run.stderr
    log = only_run_dir(tmp_path / "telemetry") / "events.jsonl"
    assert whole_lines(log) == summary_events(run.stderr)


@pytest.mark.slow
def test_a_hung_rank_makes_the_others_stop_after_the_rank_timeout(
    tmp_path: Path, training: list[Training]
) -> None:
    """Rank 1 stopped (SIGSTOP): rank 0 gives up at its next exchange, 5 s after it began
    waiting, at most a batch (a few seconds here) after the hang."""
    run = endless(tmp_path, training, "--rank-timeout", "5")
    leader, hung = rank_process(run, 0), rank_process(run, 1)
    hung.suspend()
    suspended = time.monotonic()
    try:
        stopped = run.wait_for_line("esper: training stopped: rank 0 of 2: ", timeout=60)
        assert time.monotonic() - suspended < 5 + 30
        assert "another rank stopped answering" in run.lines[stopped]
        leader.wait(timeout=30)
    finally:
        # torchrun would wait 30 s for the stopped rank to take its SIGTERM.
        hung.kill()
    assert run.wait(timeout=60) != 0
    log = only_run_dir(tmp_path / "telemetry") / "events.jsonl"
    assert whole_lines(log) == summary_events(run.stderr)


@pytest.mark.slow
def test_sigterm_to_torchrun_flushes_every_rank(tmp_path: Path, training: list[Training]) -> None:
    run = endless(tmp_path, training)
    run.process.send_signal(signal.SIGTERM)
    run.wait(timeout=60)
    assert "esper: training terminated (SIGTERM)" in run.stderr
    run_dir = only_run_dir(tmp_path / "telemetry")
    counts = {path.name: whole_lines(path) for path in run_dir.glob("events*.jsonl")}
    assert set(counts) == {"events.jsonl", "events-rank1.jsonl"} and all(counts.values())
    assert summary_events(run.stderr) == sum(counts.values())
    assert f"{run_dir / 'events-rank1.jsonl'} (rank 1)" in run.stderr


@pytest.mark.slow
def test_a_process_without_an_environment_is_refused_before_any_work(tmp_path: Path) -> None:
    done = train_to_the_end(
        [*SHORT_RUN, "--envs", "1"], tmp_path / "telemetry", command=torchrun(2)
    )
    assert done.returncode != 0
    assert "esper: error: --envs 1 is fewer than the 2 processes" in done.stderr
    assert not (tmp_path / "telemetry").exists()


@pytest.mark.slow
def test_a_run_of_two_ranks_resumes_where_its_checkpoint_stopped(
    tmp_path: Path, two_ranks: ExportedRun
) -> None:
    """The second batch after a resume is the second batch of the run that went on: the
    same processes stack the same hosts, so the numbers are the same to the bit."""
    checkpoint = tmp_path / "run.pt"
    runs = {"whole": records(only_run_dir(two_ranks.telemetry_dir))}
    for name, more in (
        ("first", ["--episodes", "4", "--save", str(checkpoint)]),
        ("rest", ["--resume", str(checkpoint)]),
    ):
        (tmp_path / name).mkdir()
        done = train_to_the_end([*ARGS, *more], tmp_path / name / "telemetry", command=torchrun(2))
        assert done.returncode == 0, done.stderr
        runs[name] = records(only_run_dir(tmp_path / name / "telemetry"))

    def second_batch(lines: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """The env events and the update of the last batch (the detectors' events, which
        look back over earlier batches, left out)."""
        updates = [x for x in lines if x["event_type"] == "PPO_UPDATE_COMPLETED"]
        trace = updates[-1]["trace_id"]
        return sorted(
            (
                x["event_type"],
                x["data"].get("env_id", -1),
                x["epoch"],
                json.dumps(
                    {k: v for k, v in x["data"].items() if k != "duration_s"}, sort_keys=True
                ),
            )
            for x in lines
            if x.get("trace_id") == trace
            and ("env_id" in x["data"] or x["event_type"] == "PPO_UPDATE_COMPLETED")
        )

    assert second_batch(runs["rest"]) == second_batch(runs["whole"])


@pytest.mark.slow
def test_a_collector_that_never_answers_costs_each_rank_its_shutdown_bound_at_most(
    tmp_path: Path, two_ranks: ExportedRun
) -> None:
    """As for one process (test_dead_collector.py): at most twice the same run exporting
    to a live collector (load), plus the export's shutdown bound, plus 5 s of slack; every
    rank waits for its own export in parallel, so two ranks cost one bound, not two."""
    listener = BlackHole()
    try:
        started = time.perf_counter()
        done = train_to_the_end(
            ARGS,
            tmp_path / "telemetry",
            {"OTEL_EXPORTER_OTLP_ENDPOINT": listener.endpoint, **HTTP},
            command=torchrun(2),
        )
        wall_s = time.perf_counter() - started
    finally:
        listener.stop()
    assert done.returncode == 0, done.stderr
    counts = [whole_lines(path) for path in only_run_dir(tmp_path / "telemetry").glob("events*")]
    assert summary_events(done.stderr) == sum(counts) > 0
    assert wall_s <= 2 * two_ranks.wall_s + DEFAULT_SHUTDOWN_TIMEOUT_S + 5, (wall_s, two_ranks)
