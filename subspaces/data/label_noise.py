"""Label noise: a fixed fraction of training labels replaced by random labels, fixed by a data seed.

As the original: a permutation of the training set and a random label per position; the first
``int(n * fraction)`` positions of the permutation take their random label (which may equal the
true one). So the noisy sets are nested across fractions and identical for every run with the same
data seed. Unlike the original, the plan comes from ``numpy.random.default_rng(data_seed)`` and its
file is written to a data or log folder, never the current directory.

The file is a record of a pure function of (data seed, size, classes): one that is corrupt,
truncated or for another number of classes is made again from the seed and replaced atomically.
Data sets write it only when training starts (:meth:`subspaces.data.base.DataBundle.set_epoch`), so a run
refused for bad input leaves no file behind. It is read with ``allow_pickle=False``: no code runs.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from subspaces.utils.errors import UserError
from subspaces.utils.io import atomic_write


def noise_file(cache_dir: str, set_name: str, data_seed: int, n: int) -> str:
    """Path of the saved permutation and random labels of one training set."""
    return os.path.join(cache_dir, "label_noise", f"{set_name}_dataseed{data_seed}_n{n}.npz")


def _make_plan(n: int, num_classes: int, data_seed: int) -> tuple:
    rng = np.random.default_rng(data_seed)
    return rng.permutation(n), rng.integers(num_classes, size=n)


@dataclass(frozen=True)
class NoiseRecord:
    """A plan not yet (or not correctly) on disk: :meth:`write` saves it atomically."""

    path: str
    perm: np.ndarray
    labels: np.ndarray
    num_classes: int

    def write(self) -> None:
        """Save the plan; a folder that cannot take it only costs the record (the plan is remade from the seed)."""

        def save(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, perm=self.perm, labels=self.labels, num_classes=np.int64(self.num_classes))

        try:
            atomic_write(self.path, save)
        except OSError as e:
            print(f"warning: could not write the label-noise record {self.path} ({e.strerror or e}); "
                  "the same labels are made again from --data-seed", file=sys.stderr)


def load_plan(path: str, n: int, num_classes: int) -> Optional[tuple]:
    """The (permutation, random labels) saved at ``path``, or None when missing, corrupt or for another set."""
    if os.path.isdir(path):
        raise UserError(f"label-noise file {path} is a folder; delete it (it is made again from --data-seed)")
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            perm, labels, k = f["perm"], f["labels"], int(f["num_classes"])
    except Exception:  # truncated or garbled: BadZipFile, EOFError, ValueError, KeyError, OSError ...
        return None
    if k != num_classes or perm.shape != (n,) or labels.shape != (n,):
        return None
    if not (np.array_equal(np.sort(perm), np.arange(n)) and ((0 <= labels) & (labels < k)).all()):
        return None
    return perm, labels


def noise_plan(n: int, num_classes: int, data_seed: int, cache_dir: str, set_name: str) -> tuple:
    """``(permutation, random labels, record)`` of a training set of ``n`` examples.

    ``record`` is None when the file already holds the plan; else a :class:`NoiseRecord` to write.
    """
    path = noise_file(cache_dir, set_name, data_seed, n)
    saved = load_plan(path, n, num_classes)
    if saved is not None:
        return saved[0], saved[1], None
    perm, labels = _make_plan(n, num_classes, data_seed)
    return perm, labels, NoiseRecord(path, perm, labels, num_classes)


def plan_noisy_targets(targets: Sequence[int], num_classes: int, fraction: float, data_seed: int,
                       cache_dir: str, set_name: str) -> tuple:
    """``(noisy targets, record)``: the first ``int(n * fraction)`` positions of the seed's
    permutation relabelled, and the record still to write (None if on disk). Writes nothing."""
    if not 0.0 <= fraction <= 1.0:
        raise UserError(f"--label-noise {fraction} is not a fraction; pass a value in [0, 1]")
    out = np.array(targets, dtype=np.int64)
    perm, labels, record = noise_plan(len(out), num_classes, data_seed, cache_dir, set_name)
    k = int(len(out) * fraction)
    out[perm[:k]] = labels[:k]
    return out, record


def noisy_targets(targets: Sequence[int], num_classes: int, fraction: float, data_seed: int,
                  cache_dir: str, set_name: str) -> np.ndarray:
    """``targets`` with the first ``int(n * fraction)`` positions of the seed's permutation relabelled;
    the plan's file is written (or repaired) now."""
    out, record = plan_noisy_targets(targets, num_classes, fraction, data_seed, cache_dir, set_name)
    if record is not None:
        record.write()
    return out
