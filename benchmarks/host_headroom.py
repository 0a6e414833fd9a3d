"""How much a seed can add to the default host: host alone vs. host + each blueprint.

Each row trains one host for `--epochs` epochs on the default dataset with the default
configuration; a seed of the given blueprint is germinated as soon as the stabilization
latch fires and fossilized when it reaches PROBATIONARY (if the gate lets it). Prints the
epoch at which the latch fired and the final validation accuracy, per seed and on average.

    python benchmarks/host_headroom.py --seeds 3 --epochs 22
"""

from __future__ import annotations

import argparse
import time
from statistics import fmean

import torch

from app.contracts.actions import BLUEPRINTS, Action, germinate_action
from app.contracts.stages import SeedStage
from app.training.config import RunConfig
from app.training.datasets import load_dataset
from app.training.environment import HostEnvironment
from app.training.environment_batch import EnvironmentBatch


def run(
    config: RunConfig, seed: int, epochs: int, blueprint: str | None
) -> tuple[int | None, float, str]:
    torch.manual_seed(seed)
    dataset = load_dataset(config.dataset, seed=config.seed)
    env = HostEnvironment(
        0, dataset, config.host, config.slot, config.tracker, seed, torch.device("cpu")
    )
    batch = EnvironmentBatch([env])
    stabilized_at = None
    accuracy = 0.0
    for epoch in range(1, epochs + 1):
        (result,) = batch.run_epoch(epoch)
        signals = result.signals
        accuracy = signals.val_accuracy
        if signals.host_stabilized and stabilized_at is None:
            stabilized_at = epoch
            if blueprint is not None:
                env.apply(germinate_action(blueprint))
        if env.slot.stage == SeedStage.PROBATIONARY:
            env.apply(Action.FOSSILIZE)
    return stabilized_at, accuracy, env.slot.stage.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=RunConfig.max_epochs)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = RunConfig()
    print(f"{'variant':<12} {'latch epochs':<14} {'final val acc per seed':<28} {'mean':>6}  stage")
    started = time.perf_counter()
    for blueprint in (None, *BLUEPRINTS):
        rows = [run(config, seed, args.epochs, blueprint) for seed in range(args.seeds)]
        latches = ",".join(str(r[0]) for r in rows)
        accuracies = " ".join(f"{r[1]:5.1f}" for r in rows)
        stages = ",".join(sorted({r[2] for r in rows}))
        name = blueprint or "host alone"
        print(
            f"{name:<12} {latches:<14} {accuracies:<28} {fmean(r[1] for r in rows):6.1f}  {stages}"
        )
    print(f"({time.perf_counter() - started:.0f}s)")


if __name__ == "__main__":
    main()
