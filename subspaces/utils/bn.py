"""BatchNorm statistics at a point of the subspace.

Statistics collected while training at random points fit no single point; evaluating a point
means recomputing them there over the training data (cumulative average), which
``torch.optim.swa_utils.update_bn`` does. We call it under ``no_grad`` (the original ran it with
autograd on, building graphs it never used).

Two weightings of the batches (``--bn-weighting``), which differ when the last batch is partial:

- ``batch`` (the default): every batch weighs the same, as the original and
  ``torch.optim.swa_utils.update_bn`` (momentum None: the cumulative average over batches);
- ``sample``: every sample weighs the same, as dnn-mode-connectivity's and swa_gaussian's
  ``update_bn``/``bn_update`` (momentum ``b / (n + b)`` for a batch of b after n samples).

Either way the running mean is the weighted mean of the batch means and the running variance the
weighted mean of the batches' unbiased variances.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim.swa_utils import update_bn as _swa_update_bn

from subspaces.utils import distributed
from subspaces.utils.modules import unwrap
from subspaces.utils.progress import progress_bar

BN_WEIGHTINGS = ("batch", "sample")


@torch.no_grad()
def update_bn(loader: Iterable, model: nn.Module, device: "torch.device | str | None" = None, weighting: str = "batch") -> None:
    """Recompute the running mean/var of every BatchNorm of ``model`` over ``loader``, each batch
    weighing the same (``weighting="batch"``) or each sample (``"sample"``)."""
    if weighting not in BN_WEIGHTINGS:
        raise ValueError(f"weighting {weighting!r} is not one of {BN_WEIGHTINGS}")
    # Through torch.compile's wrapper every batch would recompile (the cumulative average reads the
    # batch count as a Python number): recompute on the module inside (DataParallel's too).
    # Under DDP each rank averages its share of the batches; the ranks' averages are then combined
    # with their batch (or sample) counts as weights: the statistics of a one-process pass.
    # A bar on a terminal (rank 0 only): over ImageNet's training set one recompute takes minutes.
    counted = _Counted(progress_bar(distributed.shard(loader), "BatchNorm statistics", total=_shard_len(loader)))
    net = unwrap(model)
    if weighting == "batch":
        _swa_update_bn(counted, net, device=device)
    else:
        _update_bn_per_sample(counted, net, device)
    distributed.average_bn_statistics(net, counted.n, counted.n if weighting == "batch" else counted.samples)


def _update_bn_per_sample(loader: Iterable, model: nn.Module, device) -> None:
    """``update_bn`` with every sample weighing the same: dnn-mode-connectivity's ``utils.update_bn``
    (and swa_gaussian's ``bn_update``) reset the statistics, then give a batch of b after n samples
    the momentum ``b / (n + b)``. The modules' momenta and the model's mode are restored after."""
    momenta = {m: m.momentum for m in model.modules() if isinstance(m, _BatchNorm)}
    if not momenta:
        return
    was_training = model.training
    seen = 0
    try:
        for m in momenta:
            m.reset_running_stats()
        model.train()
        for batch in loader:
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            if device is not None:
                x = x.to(device)
            b = x.shape[0]
            for m in momenta:
                m.momentum = b / (seen + b)
            model(x)
            seen += b
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        model.train(was_training)


def _shard_len(loader: Iterable) -> "int | None":
    """How many batches of ``loader`` this rank takes (None when the loader has no length)."""
    try:
        n = len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None
    world = distributed.current()
    return len(range(world.rank, n, world.size))


class _Counted:
    """An iterable that counts the items it yields and the samples in them (an item's first tensor's rows)."""

    def __init__(self, items: Iterable) -> None:
        self.items, self.n, self.samples = items, 0, 0

    def __iter__(self):
        for item in self.items:
            self.n += 1
            x = item[0] if isinstance(item, (list, tuple)) else item
            self.samples += int(x.shape[0])
            yield item
