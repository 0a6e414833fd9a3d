"""Host-epochs per second: the real trainer against a plain per-env PyTorch loop.

Both train the default host (default `RunConfig`) on the same dataset with the same
minibatch size, Adam and learning-rate decay. The trainer runs as `esper train` does,
seeds, controller and health checks included, with telemetry off; the plain loop is
what the host's arithmetic alone costs: a forward, a loss, a backward and a textbook
(per-tensor) Adam step per minibatch, one validation pass per epoch. The two are
interleaved over `--rounds` so that a noisy neighbour hits them alike; the table shows
the median of the rounds.

    python benchmarks/loop_throughput.py --rounds 3 --max-epochs 6
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from statistics import median

import torch
from torch.nn.functional import cross_entropy
from torch.optim import Adam
from torch.optim.lr_scheduler import ExponentialLR

from app.contracts.events import TelemetryLevel
from app.model.host import HostCNN
from app.training.config import RunConfig
from app.training.datasets import Dataset, load_dataset
from app.training.vectorized import VectorizedTrainer


def trainer_rate(config: RunConfig, dataset: Dataset) -> float:
    """Host-epochs per second over one batch of the real trainer (PPO update included)."""
    trainer = VectorizedTrainer(config, dataset)
    started = time.perf_counter()
    trainer.run_batch()
    return config.envs * config.max_epochs / (time.perf_counter() - started)


def plain_rate(config: RunConfig, dataset: Dataset) -> float:
    """Host-epochs per second of the same hosts trained by a textbook loop."""
    host_config, device = config.host, torch.device(config.device)
    train_x, train_y = dataset.train_x.to(device), dataset.train_y.to(device)
    val_x, val_y = dataset.val_x.to(device), dataset.val_y.to(device)
    started = time.perf_counter()
    for env_id in range(config.envs):
        generator = torch.Generator().manual_seed(config.seed * 10_007 + env_id)
        host = HostCNN(
            dataset.in_channels,
            dataset.num_classes,
            dataset.image_size,
            width=host_config.width,
            block2_width=host_config.block2_width,
            block3_width=host_config.block3_width,
        ).to(device)
        optimizer = Adam(host.parameters(), host_config.lr)
        schedule = ExponentialLR(optimizer, host_config.lr_decay)
        for _ in range(config.max_epochs):
            host.train()
            order = torch.randperm(len(train_y), generator=generator).to(device)
            for index in order.split(host_config.batch_size):
                loss = cross_entropy(host(train_x[index]).logits, train_y[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            schedule.step()
            host.eval()
            with torch.inference_mode():
                float((host(val_x).logits.argmax(1) == val_y).float().mean())
    return config.envs * config.max_epochs / (time.perf_counter() - started)


def compare(envs: int, max_epochs: int, rounds: int, threads: int) -> None:
    """Measure both loops, interleaved, and print the table."""
    torch.set_num_threads(threads)
    config = replace(
        RunConfig(),
        envs=envs,
        episodes=envs,
        max_epochs=max_epochs,
        telemetry_level=TelemetryLevel.OFF,
    )
    dataset = load_dataset(config.dataset, seed=config.seed)
    trainer, plain = [], []
    for _ in range(rounds):
        trainer.append(trainer_rate(config, dataset))
        plain.append(plain_rate(config, dataset))
    print(
        f"{config.dataset}, {config.envs} envs x {config.max_epochs} epochs, "
        f"{threads} thread(s), median of {rounds} rounds"
    )
    print(f"{'loop':<22} {'host-epochs/s':>14} {'ms/host-epoch':>14}")
    for name, rates in (("VectorizedTrainer", trainer), ("plain PyTorch loop", plain)):
        rate = median(rates)
        print(f"{name:<22} {rate:14.2f} {1000 / rate:14.1f}")
    print(f"{'trainer / plain':<22} {median(trainer) / median(plain):14.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--envs", type=int, default=RunConfig.envs)
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    compare(args.envs, args.max_epochs, args.rounds, args.threads)


if __name__ == "__main__":
    main()
