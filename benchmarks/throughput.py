"""The training loop's speed against a plain PyTorch loop, then what each telemetry event
costs the training thread, per sink and for the hub in total.

First the host-epochs per second of the trainer and of a plain per-env loop over the
same hosts, measured side by side (loop_throughput.py, default configuration,
`--loop-epochs` per episode, telemetry off). Then one real short training run
(`VectorizedTrainer`, synthetic dataset) with every sink of `esper train` on: the JSONL
log in a temporary directory, the console (compact, or verbose with `--verbose`) writing
to /dev/null, and the OpenTelemetry sink of a real `configure_opentelemetry` session
exporting over OTLP/gRPC to the test suite's receiver, which decodes every request. The
receiver runs in this script's process and the training in a child, as a collector runs
beside a real run. What each sink costs the training thread (its `capture`, or its
`emit` if it is not a deferred sink) and the hub's whole `emit` are timed in the same
run, so the columns compare side by side; the hub's figure includes its own lock and
bookkeeping. The last columns time each sink's `deliver` on the hub's delivery thread,
which the training thread does not wait for.

    python benchmarks/throughput.py --episodes 16 --envs 4 --max-epochs 20
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import quantiles
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "otel"))  # the suite's OTLP receiver

import torch  # noqa: E402
from loop_throughput import compare  # noqa: E402
from opentelemetry import trace  # noqa: E402
from receivers import GrpcReceiver  # noqa: E402

from app import telemetry  # noqa: E402
from app.contracts import telemetry_names as names  # noqa: E402
from app.contracts.events import TelemetryEvent, TelemetryLevel  # noqa: E402
from app.training.config import RunConfig  # noqa: E402
from app.training.datasets import load_dataset  # noqa: E402
from app.training.vectorized import VectorizedTrainer  # noqa: E402
from instrumentation.hub import TelemetryHub  # noqa: E402
from instrumentation.otel import configure_opentelemetry, current_span_ids  # noqa: E402
from instrumentation.sinks import ConsoleSink, JsonlSink  # noqa: E402
from instrumentation.sinks.base import DeferredSink, TelemetrySink  # noqa: E402


class TimedSink:
    """Passes every call to `inner` and keeps how long each `emit` took, in seconds."""

    def __init__(self, inner: TelemetrySink) -> None:
        self.inner = inner
        self.name = inner.name
        self.samples: list[float] = []
        self.delivery_samples: list[float] = []

    @property
    def dropped(self) -> int:
        return int(getattr(self.inner, "dropped", 0))

    def emit(self, event: TelemetryEvent) -> None:
        started = time.perf_counter()
        try:
            self.inner.emit(event)
        finally:
            self.samples.append(time.perf_counter() - started)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()


class TimedDeferredSink(TimedSink):
    """A `TimedSink` for a deferred sink: times `capture` (on the training thread) and
    `deliver` (on the hub's delivery thread) apart."""

    def __init__(self, inner: DeferredSink) -> None:
        super().__init__(inner)
        self.deferred = inner

    def capture(self, event: TelemetryEvent) -> object:
        started = time.perf_counter()
        try:
            return self.deferred.capture(event)
        finally:
            self.samples.append(time.perf_counter() - started)

    def deliver(self, event: TelemetryEvent, captured: object) -> None:
        started = time.perf_counter()
        try:
            self.deferred.deliver(event, captured)
        finally:
            self.delivery_samples.append(time.perf_counter() - started)


def timed(sink: TelemetrySink) -> TimedSink:
    return TimedDeferredSink(sink) if isinstance(sink, DeferredSink) else TimedSink(sink)


class TimedHub:
    """The event handler `app.telemetry.emit` calls: times the hub's whole `emit`."""

    def __init__(self, hub: TelemetryHub) -> None:
        self.hub = hub
        self.samples: list[float] = []

    def emit(self, event: TelemetryEvent) -> None:
        started = time.perf_counter()
        self.hub.emit(event)
        self.samples.append(time.perf_counter() - started)


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    """(p50, p99, mean) in microseconds."""
    cuts = quantiles(samples, n=100, method="inclusive")
    return cuts[49] * 1e6, cuts[98] * 1e6, sum(samples) / len(samples) * 1e6


def train(config: RunConfig, handler: TimedHub, run_id: str) -> None:
    tracer = trace.get_tracer("esper.cli")
    with tracer.start_as_current_span(names.RUN_SPAN, attributes={names.RUN_ID: run_id}) as span:
        trainer = VectorizedTrainer(
            config, load_dataset("synthetic", seed=config.seed), run_id=run_id, run_span=span
        )
        previous = telemetry.event_handler()
        telemetry.set_event_handler(handler)
        try:
            while not trainer.finished:
                trainer.run_batch()
        finally:
            telemetry.set_event_handler(previous)
            handler.hub.close()


@dataclass(frozen=True)
class Row:
    name: str
    samples: list[float]
    delivery_samples: list[float]


def measure(args: argparse.Namespace, endpoint: str, directory: Path) -> list[Row]:
    os.environ.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_METRIC_EXPORT_INTERVAL": "5000",
        }
    )
    run_id = uuid.uuid4().hex[:16]
    session = configure_opentelemetry(run_id)
    if session.sink is None:
        raise RuntimeError("the OpenTelemetry SDK is disabled (OTEL_SDK_DISABLED)")
    with Path(os.devnull).open("w") as devnull:
        sinks: list[TimedSink] = [
            timed(JsonlSink(directory, context_provider=current_span_ids)),
            timed(ConsoleSink(verbose=args.verbose, stream=devnull)),
            timed(session.sink),
        ]
        handler = TimedHub(TelemetryHub(sinks))
        config = RunConfig(
            envs=args.envs,
            episodes=args.episodes,
            max_epochs=args.max_epochs,
            dataset="synthetic",
            seed=0,
            telemetry_level=TelemetryLevel[args.level.upper()],
        )
        try:
            train(config, handler, run_id)
        finally:
            session.shutdown(timeout_s=10)
    rows = [Row(sink.name, sink.samples, sink.delivery_samples) for sink in sinks]
    return [*rows, Row("hub (all)", handler.samples, [])]


def print_table(rows: list[Row], describe: Callable[[], str]) -> None:
    print(describe())
    print(f"{'':<26} {'training thread':^26}   {'delivery thread':^17}")
    print(
        f"{'sink':<18} {'events':>7} {'p50 µs':>8} {'p99 µs':>8} {'mean µs':>8}"
        f"   {'p50 µs':>8} {'p99 µs':>8}"
    )
    for row in rows:
        p50, p99, mean = percentiles(row.samples)
        line = f"{row.name:<18} {len(row.samples):>7} {p50:>8.1f} {p99:>8.1f} {mean:>8.1f}"
        if row.delivery_samples:
            later50, later99, _ = percentiles(row.delivery_samples)
            line += f"   {later50:>8.1f} {later99:>8.1f}"
        print(line)


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    with TemporaryDirectory() as directory:
        rows = measure(args, args.endpoint, Path(directory))
    print_table(
        rows,
        lambda: (
            f"{args.episodes} episodes x {args.max_epochs} epochs, {args.envs} envs, "
            f"level {args.level}, console {'verbose' if args.verbose else 'compact'}, "
            "OTLP/gRPC to a live receiver in another process"
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--level", choices=["minimal", "normal", "debug"], default="debug")
    parser.add_argument("--verbose", action="store_true", help="verbose console lines")
    parser.add_argument(
        "--loop-epochs", type=int, default=25, help="epochs per episode of the loop comparison"
    )
    parser.add_argument("--loop-rounds", type=int, default=3)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.endpoint is not None:
        child(args)
        return
    compare(RunConfig.envs, args.loop_epochs, args.loop_rounds, threads=1)
    print()
    # The receiver decodes every request; in the training process it would take the GIL
    # from the thread being measured, which a real collector never does.
    receiver = GrpcReceiver().start()
    try:
        subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--endpoint", receiver.endpoint], check=True
        )
    finally:
        receiver.stop()
    print(f"spans received by the live receiver: {len(receiver.spans())}")


if __name__ == "__main__":
    main()
