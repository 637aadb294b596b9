"""The run loop every trainer plugs into: epochs of ``train``, ``test`` when due, checkpoints.

It names no trainer: what differs between trainers comes through the hooks of
:class:`~subspaces.trainers.base.Trainer` (the learning rate of an epoch, training, testing). An
evaluation-only trainer, or a run resumed at its last epoch, is tested once.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from subspaces.utils.schedulers import assign_learning_rate
from subspaces.utils.seed import derive_seed

from .base import Position, RunContext, TestResult, Trainer


@dataclass
class Progress:
    """Accuracies and loss of a run so far (what checkpoints and the results row record)."""

    curr_acc1: float = 0.0
    best_acc1: float = 0.0
    train_loss: float = 0.0
    metrics: dict = field(default_factory=dict)
    result: Optional[TestResult] = None

    def tested(self, result: TestResult, epoch: int) -> None:
        """Record a test's result; ``epoch`` is the number of completed epochs."""
        self.result = result
        self.curr_acc1, self.metrics = result.acc1, dict(result.metrics)
        self.best_acc1 = max(self.best_acc1, self.curr_acc1)
        self.metrics["epoch"] = epoch


def fit(trainer: Trainer, ctx: RunContext, start: Position, schedule: Callable[[int], float],
        progress: Progress, save: Callable[[Position], object]) -> Progress:
    """Train from ``start`` to ``--epochs`` (testing every ``--test-freq`` epochs and at the last,
    checkpointing after each of ``--save-epochs`` and at the end), or test once when there is
    nothing to train. ``save(position)`` writes a checkpoint at an epoch boundary."""
    s = trainer.settings
    per_epoch = len(ctx.data.train_loader)  # TensorBoard's x: the global step, as the checkpoints' iter
    if not trainer.trains or (start.epoch == s.epochs and start.batch == 0):
        ctx.step = start.epoch * per_epoch
        progress.tested(trainer.test(ctx, start.epoch), start.epoch)
        return progress
    if start.epoch == 0 and start.batch == 0:
        save(Position(0))  # the initialisation, as the original
    ctx.resume_at = start if start.batch else None
    for epoch in range(start.epoch, s.epochs):
        # Dropout and friends; under DDP each rank its own stream (its part of the batch).
        torch.manual_seed(derive_seed(s.seed, epoch, "torch", *((ctx.world.rank,) if ctx.world.size > 1 else ())))
        lr = trainer.learning_rate(epoch, schedule)
        for opt in ctx.optimizers:
            if opt is not None:
                assign_learning_rate(opt, lr)
        ctx.step = epoch * per_epoch
        ctx.log_scalar("train/lr", lr)
        progress.train_loss = trainer.train(ctx, epoch)
        ctx.step = (epoch + 1) * per_epoch
        last = epoch == s.epochs - 1
        if s.test_freq is None or epoch % s.test_freq == 0 or last:
            progress.tested(trainer.test(ctx, epoch), epoch + 1)
        progress.metrics["epoch"] = epoch + 1
        if ctx.world.main:
            print(f"epoch {epoch + 1}/{s.epochs}: train_loss {progress.train_loss:.4f} acc {progress.curr_acc1:.4f} "
                  f"(best {progress.best_acc1:.4f}) lr {lr:.4g}", file=sys.stderr)
        if (s.save_epochs and epoch + 1 in s.save_epochs) or last:
            save(Position(epoch + 1))
    return progress
