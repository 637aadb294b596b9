"""Batches of a data set held whole in tensors on one device, augmented there in batches.

The fast path for small sets (Digits, CIFAR): no worker processes, no per-image PIL work; the
random crop and flip of a batch are one gather on the device.
"""
from __future__ import annotations

import copy
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from subspaces.utils.distributed import World, part

from .base import derive_seed, num_batches


def crop_and_flip(x: torch.Tensor, pad: int, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Per-sample random crop of the zero-padded batch, then horizontal flip, as one gather.

    ``x`` is (B, C, H, W); ``offsets`` (B, 2) holds each crop's top-left corner (row, col) in the
    padded image, each in [0, 2*pad]; ``flips`` (B,) says which crops to mirror. Output is (B, C, H, W).
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad)) if pad > 0 else x
    hp, wp = padded.shape[-2:]
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # (B, W)
    # Flipping after cropping reverses the window's columns (RandomCrop, then RandomHorizontalFlip).
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    # One gather over the flattened pixels: the window's linear indices, shared by all channels.
    index = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, hp * wp).gather(2, index).view(b, c, h, w)


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host-drawn randomness to the device without a sync (pinned, non-blocking on CUDA)."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


class TensorLoader:
    """Batches ``(x, y)`` of whole tensors on a device; optional crop/flip/normalise per batch.

    ``x`` is either float (already normalised; padding is zero in that space) or uint8 (raw pixels:
    padded with black, then scaled to [0, 1] and normalised with ``mean``/``std``, as torchvision's
    RandomCrop -> ToTensor -> Normalize does). Randomness comes from a CPU generator that
    :meth:`set_epoch` reseeds from (seed, epoch).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False,
                 pad: int = 0, flip: bool = False,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                 seed: int = 0, device: Optional[str] = None, world: World = World()) -> None:
        device = torch.device(device) if device is not None else x.device
        self.x, self.y = x.to(device), y.to(device)
        self.dataset = TensorDataset(self.x, self.y)
        self.batch_size, self.shuffle = batch_size, shuffle
        self.pad, self.flip = pad, flip  # pad > 0 turns on the random crop (RandomCrop(size, pad))
        self.device, self.seed = device, seed
        self.world = world  # DDP: this rank's part of every batch (the global batch is batch_size)
        shape = (1, -1, 1, 1)
        self.mean = None if mean is None else torch.tensor(mean, device=device).view(shape)
        self.std = None if std is None else torch.tensor(std, device=device).view(shape)
        self.generator = torch.Generator()
        self.set_epoch(0)

    def unsharded(self) -> "TensorLoader":
        """The same batches whole (a DDP run's BatchNorm passes shard them by batch)."""
        if self.world.size == 1:
            return self
        twin = copy.copy(self)
        twin.world, twin.generator = World(), torch.Generator()
        twin.set_epoch(0)
        return twin

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Reseed the shuffle and augmentation so that this epoch depends only on (seed, epoch);
        the next pass starts at batch ``start_batch`` (a run resumed mid-epoch), the batches
        before it drawn but not made, so the rest are exactly the uninterrupted epoch's."""
        self.generator.manual_seed(derive_seed(self.seed, epoch))
        self.start_batch = start_batch

    def __len__(self) -> int:
        return num_batches(len(self.y), self.batch_size)

    def __iter__(self) -> Iterator[tuple]:
        n = len(self.y)
        order = _to_device(torch.randperm(n, generator=self.generator), self.device) if self.shuffle else None
        skip, self.start_batch = self.start_batch, 0
        for k, start in enumerate(range(0, n, self.batch_size)):
            b = min(self.batch_size, n - start)
            drawn = self._draw(b)
            if k < skip:
                continue
            if self.world.size > 1:  # this rank's part of the global batch, with its part of the draws
                sel = part(b, self.world)
                start, stop = start + sel.start, start + sel.stop
                drawn = None if drawn is None else tuple(d[sel] for d in drawn)
            else:
                stop = start + b
            if order is None:
                xb, yb = self.x[start:stop], self.y[start:stop]
            else:
                idx = order[start:stop]
                xb, yb = self.x[idx], self.y[idx]
            yield self._augment(xb, drawn), yb

    def _draw(self, b: int) -> Optional[tuple]:
        """A batch's crop offsets and flips, drawn on the CPU, so batches are identical on every
        device for the same seed (None without augmentation)."""
        if not (self.pad > 0 or self.flip):
            return None
        offsets = torch.randint(0, 2 * self.pad + 1, (b, 2), generator=self.generator)
        flips = torch.rand(b, generator=self.generator) < 0.5
        if not self.flip:
            flips.fill_(False)
        return offsets, flips

    def _augment(self, xb: torch.Tensor, drawn: Optional[tuple] = None) -> torch.Tensor:
        """Crop, flip (with ``drawn``, or a fresh draw), scale and normalise a batch."""
        if drawn is None:
            drawn = self._draw(xb.shape[0])  # None again without augmentation: nothing drawn
        if drawn is not None:
            offsets, flips = drawn
            xb = crop_and_flip(xb, self.pad, _to_device(offsets, xb.device), _to_device(flips, xb.device))
        if xb.dtype == torch.uint8:
            xb = xb.float().div_(255)
        if self.mean is not None:
            xb = (xb - self.mean) / self.std
        return xb
