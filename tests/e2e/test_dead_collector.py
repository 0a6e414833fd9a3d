"""A collector that is down or never answers costs training a bounded time:
with OTEL_EXPORTER_OTLP_ENDPOINT at a closed port or at a listener that accepts
connections and never replies, over gRPC and over HTTP/protobuf, `esper train` exits 0,
the JSONL log is complete, and the run takes at most the shutdown bound of
instrumentation/otel/session.py more than the same run without an endpoint, allowing for
load (see `test_training_finishes_with_a_complete_log_within_the_bound`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_runs import SHORT_RUN, count_of, log_records, train_to_the_end
from receivers import BlackHole, free_port

from instrumentation.otel import DEFAULT_SHUTDOWN_TIMEOUT_S

# 2 batches of 2 envs; each episode runs 6 epochs.
ARGS = (*SHORT_RUN, "--episodes", "4")
UPDATES, EPOCHS = 2, 2 * 6 * 2
# The training part of a run slows down with the machine's load, the shutdown bound
# (wall-clock) does not: the baseline may have run on a quieter machine than the run.
LOAD_FACTOR = 2.0
# Interpreter exit, gRPC channel teardown, timing noise.
SLACK_S = 5.0


@dataclass(frozen=True)
class Timed:
    wall_s: float
    stderr: str


def train(telemetry_dir: Path, otel: dict[str, str] | None = None) -> Timed:
    """One short run in a child process; checks its exit code and its log."""
    started = time.perf_counter()
    done = train_to_the_end(ARGS, telemetry_dir, otel)
    wall_s = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert "esper: training completed" in done.stderr
    records = log_records(telemetry_dir)
    assert count_of(records, "PPO_UPDATE_COMPLETED") == UPDATES, done.stderr
    assert count_of(records, "EPOCH_COMPLETED") == EPOCHS, done.stderr
    return Timed(wall_s, done.stderr)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Timed:
    """The same run with no endpoint configured (no OTLP exporter at all): the faster of
    two, as the first child of a session also pays for cold file caches."""
    runs = [train(tmp_path_factory.mktemp("baseline") / "telemetry") for _ in range(2)]
    return min(runs, key=lambda run: run.wall_s)


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    listener = BlackHole()
    yield listener
    listener.stop()


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("collector", ["closed-port", "never-answers"])
def test_training_finishes_with_a_complete_log_within_the_bound(
    tmp_path: Path,
    baseline: Timed,
    black_hole: BlackHole,
    collector: str,
    protocol: str,
) -> None:
    """The bound is LOAD_FACTOR x the baseline + the shutdown bound + SLACK_S.

    A dead collector may cost the run its shutdown bound, no more: the final flush waits
    for the collector only as long as the bound allows. The rest of the run (start-up,
    training) is CPU work that slows down with the machine's load, and the baseline,
    measured once for the module, may have met less load than this run; so the bound
    allows twice the baseline's time for it. What the bound still catches is a run that
    waits for the collector beyond the shutdown bound by more than a baseline: the
    training loop blocked on exports (each costs the 5 s export timeout), a final flush
    without a deadline against a listener that never answers (it never returns), or
    exporter retries that are not cut off by the bound.
    """
    endpoint = (
        black_hole.endpoint if collector == "never-answers" else (f"http://127.0.0.1:{free_port()}")
    )
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}

    run = train(tmp_path / "telemetry", otel)

    extra_s = run.wall_s - baseline.wall_s
    print(
        f"{collector} {protocol}: {run.wall_s:.1f}s, baseline {baseline.wall_s:.1f}s, "
        f"extra {extra_s:.1f}s"
    )
    bound_s = LOAD_FACTOR * baseline.wall_s + DEFAULT_SHUTDOWN_TIMEOUT_S + SLACK_S
    assert run.wall_s <= bound_s, (
        f"{run.wall_s:.1f}s > {bound_s:.1f}s ({LOAD_FACTOR:g} x baseline "
        f"{baseline.wall_s:.1f}s + {DEFAULT_SHUTDOWN_TIMEOUT_S:g}s shutdown bound + "
        f"{SLACK_S:g}s)\n{run.stderr}"
    )
