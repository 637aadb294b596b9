"""Explicit randomness: one seeding function and seeds derived per purpose and epoch.

Every random stream of a run (data order and augmentation, points drawn from the subspace,
dropout) is reseeded at the start of each epoch from ``(seed, epoch, purpose)``, so a run resumed
at an epoch boundary draws exactly what the uninterrupted run drew.
"""
from __future__ import annotations

import random
import zlib

import numpy as np
import torch


def derive_seed(seed: int, *keys: "int | str") -> int:
    """A 63-bit seed derived from ``seed`` and ``keys`` (stable across processes and runs)."""
    ints = [int(seed) & ((1 << 64) - 1)] + [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return int(np.random.SeedSequence(ints).generate_state(1, dtype=np.uint64)[0]) & ((1 << 63) - 1)


def make_generator(seed: int, *keys: "int | str") -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` (``seed``, ``keys``)."""
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
