"""What telemetry costs a training run: off vs. JSONL only vs. JSONL + OpenTelemetry
(with and without the events' log records).

Every mode runs the same `esper train` job (same seed, so the same work) in its own
process; modes are interleaved over `--rounds` so that a noisy neighbour hits them
alike. The time compared is the training time the run reports (setup and the bounded
export shutdown excluded; the shutdown is reported apart). The live receiver is the
in-process OTLP/gRPC receiver of the test suite, decoding every request.

    python benchmarks/telemetry_overhead.py --episodes 8 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "otel"))  # the suite's OTLP receiver

from receivers import GrpcReceiver  # noqa: E402

TRAINING_TIME = re.compile(r"training completed in ([0-9.]+)s")


def modes(endpoint: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    disabled = {"OTEL_SDK_DISABLED": "true"}
    otlp = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_METRIC_EXPORT_INTERVAL": "5000",
    }
    return {
        "telemetry off": (["--telemetry-level", "off"], disabled),
        "JSONL only": ([], disabled),
        "JSONL + OTel SDK, no exporter": ([], {}),
        "JSONL + OTLP, no log records": ([], {**otlp, "OTEL_LOGS_EXPORTER": "none"}),
        "JSONL + OTLP to live receiver": ([], otlp),
    }


def run(flags: list[str], env: dict[str, str], args: argparse.Namespace) -> tuple[float, float]:
    """(training seconds reported by the run, wall seconds of the whole process)."""
    with TemporaryDirectory() as telemetry:
        command = [
            sys.executable, "-m", "app", "train", "--no-progress",
            "--episodes", str(args.episodes), "--envs", str(args.envs),
            "--max-epochs", str(args.max_epochs), "--seed", "0",
            "--telemetry-dir", telemetry, *flags,
        ]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(
            command, env={**os.environ, **env}, capture_output=True, text=True, check=True
        )
        wall = time.perf_counter() - started
    match = TRAINING_TIME.search(done.stderr)
    if match is None:
        raise RuntimeError(f"no training time in the output:\n{done.stderr}")
    return float(match.group(1)), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--max-epochs", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    receiver = GrpcReceiver().start()
    try:
        table = modes(receiver.endpoint)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in table}
        for _ in range(args.rounds):
            for name, (flags, env) in table.items():
                times[name].append(run(flags, env, args))
    finally:
        receiver.stop()
    baseline = median(t for t, _ in times["telemetry off"])
    print(
        f"{args.episodes} episodes x {args.max_epochs} epochs, {args.envs} envs, "
        f"median of {args.rounds} interleaved rounds"
    )
    print(f"{'mode':<32} {'training s':>10} {'ratio':>7} {'process s':>10}")
    for name, samples in times.items():
        training = median(t for t, _ in samples)
        wall = median(w for _, w in samples)
        print(f"{name:<32} {training:>10.2f} {training / baseline:>7.3f} {wall:>10.2f}")
    print(
        f"received by the live receiver: {len(receiver.spans())} spans, "
        f"{len(receiver.log_records())} log records"
    )


if __name__ == "__main__":
    main()
