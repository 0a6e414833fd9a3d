"""Static host, heuristic and PPO controllers on the default run, over several seeds.

Each controller trains the default configuration (`esper train` with no flags, telemetry
collected by a counter only) once per seed. Prints, per controller, the mean and standard
deviation over the seeds of the last batch's accuracy and of the mean of every batch's
accuracy, with fossilizations and culls per episode and the training time.

    python benchmarks/controllers.py --seeds 0 1 2 3 4 --jobs 2

`--jobs` runs that many trainings at once, one process each (a run's numbers do not depend
on it; its seconds do, as the runs share the cores).
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from statistics import fmean, stdev

import torch

from app import telemetry
from app.contracts.events import EventType, TelemetryEvent, TelemetryLevel
from app.training.config import CONTROLLERS, RunConfig
from app.training.datasets import load_dataset
from app.training.vectorized import VectorizedTrainer


class _EventCounter(Counter[EventType]):
    def emit(self, event: TelemetryEvent) -> None:
        self[event.event_type] += 1


@dataclass(frozen=True)
class Outcome:
    last_batch: float
    run_mean: float
    fossilized: float
    culled: float
    seconds: float


def train(config: RunConfig) -> Outcome:
    """One run of `config` to the end; what it reached and what its seeds became."""
    counter = _EventCounter()
    previous = telemetry.event_handler()
    telemetry.set_event_handler(counter)
    try:
        trainer = VectorizedTrainer(config, load_dataset(config.dataset, seed=config.seed))
        started = time.perf_counter()
        accuracies = []
        while not trainer.finished:
            accuracies.append(trainer.run_batch().avg_accuracy)
        seconds = time.perf_counter() - started
    finally:
        telemetry.set_event_handler(previous)
    episodes = trainer.progress.episodes_completed
    return Outcome(
        accuracies[-1],
        fmean(accuracies),
        counter[EventType.SEED_FOSSILIZED] / episodes,
        counter[EventType.SEED_CULLED] / episodes,
        seconds,
    )


def _spread(values: list[float]) -> str:
    deviation = stdev(values) if len(values) > 1 else 0.0
    return f"{fmean(values):6.2f} ± {deviation:4.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--controllers", nargs="+", choices=CONTROLLERS, default=CONTROLLERS)
    parser.add_argument("--episodes", type=int, default=RunConfig.episodes)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    base = replace(RunConfig(), episodes=args.episodes, telemetry_level=TelemetryLevel.NORMAL)
    print(
        f"{base.dataset}, {base.envs} envs, {base.episodes} episodes of {base.max_epochs} "
        f"epochs, seeds {' '.join(map(str, args.seeds))}: mean ± sd over seeds"
    )
    print(
        f"{'controller':<10} {'last batch %':>15} {'run mean %':>15} "
        f"{'fossilized/ep':>14} {'culled/ep':>10} {'s/run':>7}   last batch % per seed"
    )
    configs = [
        replace(base, controller=controller, seed=seed)
        for controller in args.controllers
        for seed in args.seeds
    ]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        args.jobs, context, initializer=torch.set_num_threads, initargs=(1,)
    ) as pool:
        outcomes = list(pool.map(train, configs))
    for index, controller in enumerate(args.controllers):
        runs = outcomes[index * len(args.seeds) : (index + 1) * len(args.seeds)]
        print(
            f"{controller:<10} {_spread([r.last_batch for r in runs]):>15} "
            f"{_spread([r.run_mean for r in runs]):>15} "
            f"{fmean(r.fossilized for r in runs):14.2f} {fmean(r.culled for r in runs):10.2f} "
            f"{fmean(r.seconds for r in runs):7.1f}   "
            + " ".join(f"{r.last_batch:.2f}" for r in runs)
        )


if __name__ == "__main__":
    main()
