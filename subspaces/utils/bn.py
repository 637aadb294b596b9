"""BatchNorm statistics at a point of the subspace.

Statistics collected while training at random points fit no single point; evaluating a point
means recomputing them there over the training data (cumulative average), which
``torch.optim.swa_utils.update_bn`` does. We call it under ``no_grad`` (the original ran it with
autograd on, building graphs it never used).
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn
from torch.optim.swa_utils import update_bn as _swa_update_bn

from subspaces.utils import distributed
from subspaces.utils.modules import unwrap
from subspaces.utils.progress import progress_bar


@torch.no_grad()
def update_bn(loader: Iterable, model: nn.Module, device: "torch.device | str | None" = None) -> None:
    """Recompute the running mean/var of every BatchNorm of ``model`` over ``loader``."""
    # Through torch.compile's wrapper every batch would recompile (the cumulative average reads the
    # batch count as a Python number): recompute on the module inside (DataParallel's too).
    # Under DDP each rank averages its share of the batches; the ranks' averages are then combined
    # with their batch counts as weights: the statistics of a one-process pass over all batches.
    # A bar on a terminal (rank 0 only): over ImageNet's training set one recompute takes minutes.
    counted = _Counted(progress_bar(distributed.shard(loader), "BatchNorm statistics", total=_shard_len(loader)))
    _swa_update_bn(counted, unwrap(model), device=device)
    distributed.average_bn_statistics(unwrap(model), counted.n)


def _shard_len(loader: Iterable) -> "int | None":
    """How many batches of ``loader`` this rank takes (None when the loader has no length)."""
    try:
        n = len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None
    world = distributed.current()
    return len(range(world.rank, n, world.size))


class _Counted:
    """An iterable that counts the items it yields."""

    def __init__(self, items: Iterable) -> None:
        self.items, self.n = items, 0

    def __iter__(self):
        for item in self.items:
            self.n += 1
            yield item
