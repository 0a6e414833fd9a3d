"""What the host tracker reports after each epoch (the controller's view of the host)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingSignals:
    """One epoch of host training as the controller sees it. Accuracies are percentages."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    loss_delta: float
    accuracy_delta: float
    plateau_epochs: int
    best_val_accuracy: float
    best_val_loss: float
    loss_history: tuple[float, ...]
    accuracy_history: tuple[float, ...]
    host_stabilized: bool
