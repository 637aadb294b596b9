"""Label noise: a fixed fraction of training labels replaced by random labels, fixed by a data seed.

As the original: a permutation of the training set and a random label per position; the first
``int(n * fraction)`` positions of the permutation take their random label (which may equal the
true one). So the noisy sets are nested across fractions and identical for every run with the same
data seed. Unlike the original, the plan comes from ``numpy.random.default_rng(data_seed)`` and its
file is written to a data or log folder, never the current directory.
"""
from __future__ import annotations

import os
import tempfile
from typing import Sequence

import numpy as np

from utils.errors import UserError


def noise_file(cache_dir: str, set_name: str, data_seed: int, n: int) -> str:
    """Path of the saved permutation and random labels of one training set."""
    return os.path.join(cache_dir, "label_noise", f"{set_name}_dataseed{data_seed}_n{n}.npz")


def _make_plan(n: int, num_classes: int, data_seed: int) -> tuple:
    rng = np.random.default_rng(data_seed)
    return rng.permutation(n), rng.integers(num_classes, size=n)


def _save_atomic(path: str, **arrays) -> None:
    # Temp file + os.replace: runs started in parallel never read a half-written file.
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def noise_plan(n: int, num_classes: int, data_seed: int, cache_dir: str, set_name: str) -> tuple:
    """The (permutation, random labels) of a training set of ``n`` examples, loaded or made and saved."""
    path = noise_file(cache_dir, set_name, data_seed, n)
    if os.path.isfile(path):
        with np.load(path) as f:
            perm, labels, k = f["perm"], f["labels"], int(f["num_classes"])
        if k == num_classes and len(perm) == n and len(labels) == n:
            return perm, labels
    perm, labels = _make_plan(n, num_classes, data_seed)
    _save_atomic(path, perm=perm, labels=labels, num_classes=np.int64(num_classes))
    return perm, labels


def noisy_targets(targets: Sequence[int], num_classes: int, fraction: float, data_seed: int,
                  cache_dir: str, set_name: str) -> np.ndarray:
    """``targets`` with the first ``int(n * fraction)`` positions of the seed's permutation relabelled."""
    if not 0.0 <= fraction <= 1.0:
        raise UserError(f"--label-noise {fraction} is not a fraction; pass a value in [0, 1]")
    out = np.array(targets, dtype=np.int64)
    perm, labels = noise_plan(len(out), num_classes, data_seed, cache_dir, set_name)
    k = int(len(out) * fraction)
    out[perm[:k]] = labels[:k]
    return out
