"""Host-epochs per second of one training in 1 and in 2 processes under torchrun.

Each rank steps `--envs-per-rank` environments on one thread (`--threads 1`), so the
two-process run trains twice the environments: what a user gains by adding a process
(weak scaling). Both run `esper train` as a user would (the default digits run, JSONL and
no console events), for `--batches` batches each, and the rate is taken from the
summary's training time, which starts after start-up. The two are interleaved over
`--rounds` so that a noisy neighbour hits them alike; the table shows each round and the
median ratio.

    python benchmarks/scaling.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from statistics import median

from app.training.config import RunConfig

TRAINED = re.compile(r"esper: training completed in ([0-9.]+)s")


def training_seconds(processes: int, envs: int, episodes: int, max_epochs: int) -> float:
    """The training time the summary of one run reports."""
    launcher = [sys.executable, "-m", "app", "train"]
    if processes > 1:
        launcher = [
            *(sys.executable, "-m", "torch.distributed.run", "--standalone"),
            *(f"--nproc-per-node={processes}", "-m", "app", "train"),
        ]
    with tempfile.TemporaryDirectory() as telemetry:
        done = subprocess.run(
            [
                *launcher,
                *("--envs", str(envs), "--episodes", str(episodes)),
                *("--max-epochs", str(max_epochs), "--threads", "1"),
                *("--telemetry-level", "minimal", "--no-progress"),
                *("--telemetry-dir", telemetry),
            ],
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            check=False,
        )
    found = TRAINED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{processes} process(es) failed:\n{done.stderr}")
    return float(found[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--envs-per-rank", type=int, default=RunConfig().envs)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=RunConfig().max_epochs)
    args = parser.parse_args()

    print(f"{os.cpu_count()} cores; {args.envs_per_rank} environments per rank, one thread each")
    print("| round | processes | environments | host-epochs | training s | host-epochs/s |")
    print("|---|---|---|---|---|---|")
    ratios = []
    for round_ in range(1, args.rounds + 1):
        rates = {}
        for processes in (1, 2):
            envs = processes * args.envs_per_rank
            epochs = args.batches * envs * args.max_epochs
            seconds = training_seconds(processes, envs, args.batches * envs, args.max_epochs)
            rates[processes] = epochs / seconds
            print(
                f"| {round_} | {processes} | {envs} | {epochs} | {seconds:.1f} "
                f"| {rates[processes]:.1f} |"
            )
        ratios.append(rates[2] / rates[1])
    print(f"\n2 processes / 1 process, median of {args.rounds} rounds: {median(ratios):.2f}x")


if __name__ == "__main__":
    main()
