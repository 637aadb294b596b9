"""Test-set passes: collect a model's logits (and features) over a loader in one no-grad sweep."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

import torch
import torch.nn as nn

from subspaces.utils import distributed
from subspaces.utils.modules import unwrap


@dataclass
class Predictions:
    """A model's outputs over a whole test set (on the CPU, float32)."""

    logits: torch.Tensor
    targets: torch.Tensor
    features: Optional[torch.Tensor] = None

    @property
    def probs(self) -> torch.Tensor:
        """Softmax of the logits."""
        return self.logits.softmax(dim=1)


def autocast(device: torch.device, amp: str):
    """The autocast context for ``--amp`` (none: fp32, the paper's numerics)."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """Move an input batch to ``device`` (non-blocking), optionally channels-last."""
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    with_features: bool = False,
    amp: str = "none",
    channels_last: bool = False,
) -> Predictions:
    """Run ``model`` in eval mode over ``loader``; outputs stay on the device until the end.

    Under DDP each rank runs its share of the batches and every rank gets all outputs, in order.
    """
    was_training = model.training
    model.eval()
    net = unwrap(model)  # forward_with_features is the Net's own (inside DDP, DataParallel, compile)
    # Under DDP the ranks run different batches: call the module itself, not DDP's forward (which
    # would expect every rank to run it in step).
    forward = net if distributed.current().size > 1 else model
    outputs = []
    for x, y in distributed.shard(loader):
        x = to_device(x, device, channels_last)
        with autocast(device, amp):
            if with_features:
                out, f = net.forward_with_features(x)
            else:
                out, f = forward(x), None
        outputs.append((out.float(), y.to(device, non_blocking=True)) + ((f.float(),) if with_features else ()))
    model.train(was_training)
    outputs = distributed.gather_batches(outputs, len(loader))
    return Predictions(
        torch.cat([o[0] for o in outputs]).cpu(),
        torch.cat([o[1] for o in outputs]).cpu(),
        torch.cat([o[2] for o in outputs]).cpu() if with_features else None,
    )


@torch.no_grad()
def loss_and_error(model: nn.Module, loader: Iterable, device: torch.device, amp: str = "none", channels_last: bool = False) -> tuple:
    """``(mean cross-entropy, error rate)`` of ``model`` in eval mode over ``loader``, summed batch
    by batch on the device (no logits kept: a training set's may not fit in memory). Under DDP each
    rank runs its share of the batches and the sums are added."""
    was_training = model.training
    model.eval()
    forward = unwrap(model) if distributed.current().size > 1 else model
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, errors, samples
    for x, y in distributed.shard(loader):
        x, y = to_device(x, device, channels_last), y.to(device, non_blocking=True)
        with autocast(device, amp):
            out = forward(x).float()
        sums += torch.stack([torch.nn.functional.cross_entropy(out, y, reduction="sum").double(),
                             (out.argmax(1) != y).sum().double(), torch.tensor(float(len(y)), dtype=torch.float64, device=device)])
    model.train(was_training)
    loss, errors, n = distributed.all_sum(sums.tolist())
    return loss / max(n, 1.0), errors / max(n, 1.0)


# Batches held in memory by CachedBatches at most (beyond this, the loader is replayed instead).
CACHE_MAX_BYTES = 2 * 1024**3


class CachedBatches:
    """A loader decoded once and replayed: the first pass keeps its batches, later passes reuse them.

    ``reset`` (e.g. ``lambda: data.set_epoch(0)``) is called before every pass over the loader
    itself, so a loader with epoch-seeded shuffling and augmentation yields the same batches each
    time. A set larger than ``max_bytes`` is not kept: every pass replays the loader after
    ``reset`` -- the same batches, decoded again (e.g. ImageNet's training set).
    """

    def __init__(self, loader: Iterable, reset: Optional[Callable[[], None]] = None, max_bytes: Optional[int] = None):
        self.loader = loader
        self.reset = reset
        self.max_bytes = CACHE_MAX_BYTES if max_bytes is None else max_bytes
        self.batches: Optional[list] = None
        self.passes = 0  # passes over the underlying loader (decodes)
        self._too_big = False

    def __len__(self) -> int:
        return len(self.batches) if self.batches is not None else len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator:
        if self.batches is not None:
            yield from self.batches
            return
        if self.reset is not None:
            self.reset()
        self.passes += 1
        keep: Optional[list] = None if self._too_big else []
        size = 0
        for batch in self.loader:
            if keep is not None:
                size += sum(t.nbytes for t in batch if isinstance(t, torch.Tensor))
                if size > self.max_bytes:
                    keep, self._too_big = None, True
                else:
                    keep.append(batch)
            yield batch
        if keep is not None:  # a whole pass, within budget
            self.batches = keep
