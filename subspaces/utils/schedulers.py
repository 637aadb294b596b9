"""Learning-rate schedules by name (``--lr-policy``): a function of the epoch, set at its start.

As the original's, each schedule is a pure function of the epoch, so a resumed run follows the
same learning rates with no scheduler state to restore.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from subspaces.utils.registry import Registry

Schedule = Callable[[int], float]
SCHEDULES: Registry = Registry("learning-rate schedule", "--lr-policy")


def _warmup(s, epoch: int) -> float:
    return s.lr * (epoch + 1) / s.warmup_length


@SCHEDULES.register
def constant_lr(s) -> Schedule:
    """Constant learning rate after the warm-up."""
    return lambda e: _warmup(s, e) if e < s.warmup_length else s.lr


@SCHEDULES.register
def cosine_lr(s) -> Schedule:
    """Linear warm-up, then cosine decay to 0 over the remaining epochs (the paper's schedule)."""

    def lr(e: int) -> float:
        if e < s.warmup_length:
            return _warmup(s, e)
        span = max(1, s.epochs - s.warmup_length)
        return 0.5 * (1 + math.cos(math.pi * (e - s.warmup_length) / span)) * s.lr

    return lr


@SCHEDULES.register
def multistep_lr(s) -> Schedule:
    """Decay by ``--lr-gamma`` every ``--lr-adjust`` epochs."""
    return lambda e: s.lr * (s.lr_gamma ** (e // s.lr_adjust))


@SCHEDULES.register(name="linear")
def linear_lr(s) -> Schedule:
    """Linear decay from ``--lr`` to 0."""
    return lambda e: (1.0 - e / s.epochs) * s.lr


@SCHEDULES.register
def lth_lr(s) -> Schedule:
    """Step decay by 10 at epochs 80 and 120 (open_lth's CIFAR schedule)."""
    return lambda e: s.lr * (1.0 if e < 80 else 0.1 if e < 120 else 0.01)


@SCHEDULES.register
def swa_constant_lr(s) -> Schedule:
    """SWA's schedule: constant, then a linear ramp down to ``--swa-lr`` between 50% and 90%."""

    def lr(e: int) -> float:
        if e < s.warmup_length:
            return _warmup(s, e)
        t, ratio = e / s.epochs, s.swa_lr / s.lr
        factor = 1.0 if t <= 0.5 else 1.0 - (1.0 - ratio) * (t - 0.5) / 0.4 if t <= 0.9 else ratio
        return s.lr * factor

    return lr


def _cycles(s, start: int, count: int) -> list:
    """Cycle boundaries from ``start`` to ``epochs`` in ``count - 1`` equal cycles."""
    b = s.epochs
    if count < 2 or start >= b:
        return [b]
    step = max(1, (b - start) // (count - 1))
    ts = list(range(start, b, step))[: count - 1] + [b]
    return ts


def _cyclic(s, start: int, count: int, cycle_lr: float) -> Schedule:
    ts = _cycles(s, start, count)

    def lr(e: int) -> float:
        if e < s.warmup_length:
            return _warmup(s, e)
        if e < ts[0]:
            span = max(1, ts[0] - s.warmup_length)
            return 0.5 * (1 + math.cos(math.pi * (e - s.warmup_length) / span)) * s.lr
        i = max(k for k in range(len(ts)) if e >= ts[k])
        end = ts[i + 1] if i + 1 < len(ts) else s.epochs
        span = max(1, end - ts[i])
        return 0.5 * (1 + math.cos(math.pi * (e - ts[i]) / span)) * cycle_lr

    return lr


@SCHEDULES.register
def swa_cyc_lr(s) -> Schedule:
    """Cosine to ``--swa-start`` of the epochs, then ``num_models - 1`` cosine cycles at ``--swa-lr``.

    (The original fixed the start at ``swa_start * 160``; here it is a fraction of ``--epochs``.)
    """
    return _cyclic(s, int(s.swa_start * s.epochs), s.num_models, s.swa_lr)


@SCHEDULES.register
def cyc_lr(s) -> Schedule:
    """As :func:`swa_cyc_lr` with three snapshots."""
    return _cyclic(s, int(s.swa_start * s.epochs), 3, s.swa_lr)


@SCHEDULES.register
def snapshot_cyc_lr(s) -> Schedule:
    """Snapshot ensembles: ``num_models`` cosine cycles at ``--lr`` after the warm-up."""
    return _cyclic(s, s.warmup_length, s.num_models + 1, s.lr)


def get_schedule(name: str, settings) -> Schedule:
    """The schedule ``--lr-policy`` names, bound to ``settings``."""
    return SCHEDULES.get(name)(settings)


def assign_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set ``lr`` on every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
