"""What every data set hands to a trainer, and the epoch-seeded loaders behind it.

Resuming a run at an epoch boundary must reproduce the uninterrupted run exactly, so every random
choice of a training loader (the shuffle and each sample's augmentation) is drawn from a generator
that :meth:`DataBundle.set_epoch` reseeds from (seed, epoch) alone. For worker-process loaders the
sampler hands each index its own augmentation seed, so the result does not depend on the number
of workers, on persistent workers' RNG state, or on earlier epochs.
"""
from __future__ import annotations

import math
import os
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from subspaces.utils.distributed import World, current, part
from subspaces.utils.errors import UserError
from subspaces.utils.registry import Registry
from subspaces.utils.seed import derive_seed  # noqa: F401  (re-exported for the loaders)

# The original's normalisation for CIFAR and ImageNet (mirrors open_lth), and for TinyImageNet.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TINY_MEAN = (0.480, 0.448, 0.397)
TINY_STD = (0.276, 0.269, 0.282)


def apply_transform(transform: Optional[Callable], img, seed: Optional[int]):
    """``transform(img)``, with torch's global RNG (which torchvision draws from) pinned to ``seed``.

    The global RNG is restored afterwards, so with ``workers=0`` the main process's RNG is untouched.
    """
    if transform is None:
        return img
    if seed is None:
        return transform(img)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(img)


class EpochSampler(Sampler):
    """Shuffled indices, each paired with its augmentation seed, both fixed by (seed, epoch).

    Under DDP (``world``), every rank draws the same order and yields only its part of each global
    batch of ``batch_size`` (see :func:`subspaces.utils.distributed.part`).
    """

    def __init__(self, n: int, seed: int, world: World = World(), batch_size: int = 1) -> None:
        self.n, self.seed, self.world, self.batch_size = n, seed, world, batch_size
        self.generator = torch.Generator()
        self.set_epoch(0)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Reseed so that the next pass depends only on (seed, epoch); it starts at index ``start``
        of the epoch's order (a run resumed mid-epoch)."""
        self.generator.manual_seed(derive_seed(self.seed, epoch))
        self.start = start

    def __iter__(self) -> Iterator[tuple]:
        order = torch.randperm(self.n, generator=self.generator).tolist()
        seeds = torch.randint(0, 2**62, (self.n,), generator=self.generator).tolist()
        start, self.start = self.start, 0
        keys = list(zip(order, seeds))
        if self.world.size > 1:
            b = self.batch_size
            keys = [k for s in range(0, self.n, b) for k in keys[s:s + b][part(min(b, self.n - s), self.world)]]
            start = start // self.world.size  # the global position of a batch boundary, on this rank
        return iter(keys[start:])

    def __len__(self) -> int:
        return self.n


class EpochDataLoader(DataLoader):
    """A DataLoader over an :class:`EpochSampler`, with ``set_epoch`` (also reseeds worker base seeds)."""

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Reseed the shuffle, the per-sample augmentation seeds and the workers' base seed; the
        next pass starts at batch ``start_batch``."""
        self.sampler.set_epoch(epoch, start_batch * self.sampler.batch_size)
        self.generator.manual_seed(derive_seed(self.sampler.seed, epoch) ^ 1)

    def unsharded(self) -> "EpochDataLoader":
        """The same loader over whole global batches (a DDP run's BatchNorm passes shard by batch)."""
        if self.sampler.world.size == 1:
            return self
        sampler = EpochSampler(self.sampler.n, self.sampler.seed, World(), self.sampler.batch_size)
        return EpochDataLoader(self.dataset, batch_size=self.sampler.batch_size, sampler=sampler, generator=torch.Generator(),
                               num_workers=self.num_workers, pin_memory=self.pin_memory, persistent_workers=self.persistent_workers)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask: a Slurm allocation, ``taskset``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _loader_kwargs(settings) -> dict:
    # More worker processes than cores only adds start-up time and contention (PyTorch warns of it):
    # the configs' 8 (TinyImageNet) or 24 (ImageNet) workers are capped on a small machine. Results
    # do not depend on the number of workers (see the module docstring). Persistent workers start
    # once per loader and serve every later pass (each epoch, each BatchNorm recompute).
    workers = min(settings.workers, usable_cores())
    return {
        "num_workers": workers,
        "pin_memory": str(settings.device).startswith("cuda"),
        "persistent_workers": workers > 0,
    }


def train_loader(dataset: Dataset, settings) -> EpochDataLoader:
    """Shuffled, augmented training batches of ``dataset`` (which accepts ``(index, seed)`` keys)."""
    world = current()  # DDP: each rank loads its part of every global batch of --batch-size
    sampler = EpochSampler(len(dataset), settings.seed, world, settings.batch_size)
    return EpochDataLoader(dataset, batch_size=settings.batch_size // world.size, sampler=sampler,
                           generator=torch.Generator(), **_loader_kwargs(settings))


def eval_loader(dataset: Dataset, settings) -> DataLoader:
    """Test batches in a fixed order, of ``settings.test_batch_size``."""
    return DataLoader(dataset, batch_size=settings.test_batch_size, shuffle=False, **_loader_kwargs(settings))


DATASETS: Registry = Registry("data set", "--set")


class DataBundle:
    """The loaders of one data set and what a model needs to know about it."""

    def __init__(self, train_loader, val_loader, num_classes: int, in_channels: int, image_size: int,
                 default_model: str, default_model_name: Optional[str] = None, bn_loader=None,
                 records: Sequence = ()) -> None:
        self.train_loader = train_loader
        self.val_loader = val_loader
        # The original recomputes BatchNorm statistics over the augmented training set (under DDP
        # over its whole batches, which the evaluation passes then shard).
        if bn_loader is None:
            bn_loader = train_loader.unsharded() if hasattr(train_loader, "unsharded") else train_loader
        self.bn_loader = bn_loader
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        self.default_model = default_model
        self.default_model_name = default_model_name
        # Files that record how the set was made (label noise), written once training starts, so a
        # run refused for bad input after the data set was built leaves nothing behind.
        self._records = [r for r in records if r is not None]

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Reseed the training shuffle and augmentation: epoch e's batches depend only on (seed, e).
        The training loader's next pass starts at batch ``start_batch`` (a run resumed mid-epoch).

        The first call also writes the set's pending records (the label-noise file).
        """
        while self._records:
            self._records.pop(0).write()
        for loader in {id(l): l for l in (self.train_loader, self.bn_loader) if l is not None}.values():
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch, start_batch if loader is self.train_loader else 0)


def data_root(settings, *parts: str) -> str:
    """``<settings.data>/<parts...>`` with ``~`` expanded."""
    return os.path.join(os.path.expanduser(settings.data), *parts)


def require(paths: "list[str]", what: str, where: str, expected: str, holding: str) -> None:
    """Raise the one-line UserError naming the missing folder and the fix, if any of ``paths`` is missing."""
    if not all(os.path.exists(p) for p in paths):
        raise UserError(f"{what} not found at {where} (expected {expected}); "
                        f"pass --data <folder holding {holding}>")


def noise_cache_dir(folder: str, settings) -> str:
    """Where label-noise files live: the data folder when writable, else the log folder (never the cwd)."""
    if os.path.isdir(folder) and os.access(folder, os.W_OK):
        return folder
    return os.path.expanduser(settings.log_dir)


def maybe_noisy(targets, num_classes: int, settings, cache_dir: str, set_name: str) -> tuple:
    """``(targets, record)``: the targets with the run's label noise applied (unchanged when
    ``--label-noise`` is 0 or absent), and the noise file still to write (or None): pass it to
    :class:`DataBundle` as one of its ``records``."""
    if not settings.label_noise:  # 0.0 noise changes no label: no permutation file either
        return targets, None
    from .label_noise import plan_noisy_targets

    return plan_noisy_targets(targets, num_classes, settings.label_noise, settings.data_seed, cache_dir, set_name)


def num_batches(n: int, batch_size: int) -> int:
    """Batches per pass with ``drop_last=False``."""
    return math.ceil(n / batch_size)
