"""The batch loop of `esper train` under a progress bar, and lines printed below the bar."""

from __future__ import annotations

import sys

from tqdm import tqdm

from app.interrupts import StopRequest
from app.training.checkpoint_saver import CheckpointSaver
from app.training.vectorized import VectorizedTrainer


def train_batches(
    trainer: VectorizedTrainer,
    stop: StopRequest,
    saver: CheckpointSaver | None,
    show_bar: bool,
) -> None:
    """Run the batches under a progress bar that moves every epoch (rate and ETA in
    episodes), saving a checkpoint after each batch when asked and stopping at an epoch
    boundary when `stop` was requested."""
    stop.raise_if_requested()
    with tqdm(
        total=trainer.config.episodes,
        initial=trainer.progress.episodes_completed,
        unit="episode",
        disable=not show_bar,
        dynamic_ncols=True,
        bar_format="{l_bar}{bar}| {n:.3g}/{total} [{elapsed}<{remaining}, {rate_fmt}{postfix}]",
    ) as bar:

        def advance(episodes: float) -> None:
            bar.update(min(episodes, bar.total - bar.n))  # float steps must not overshoot
            stop.raise_if_requested()

        trainer.on_epoch = advance
        while not trainer.finished:
            last = trainer.run_batch()
            bar.n = last.episodes_completed  # exact again after the fractional steps
            bar.set_postfix(acc=f"{last.avg_accuracy:.1f}", reward=f"{last.avg_reward:.2f}")
            if saver is not None:
                saver.save(trainer.state_dict(), last.batch)


def report_line(line: str) -> None:
    """A line for the person watching, below the progress bar rather than through it."""
    tqdm.write(line, file=sys.stderr)
