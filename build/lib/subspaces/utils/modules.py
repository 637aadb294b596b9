"""Unwrapping the wrappers a model can run inside (DataParallel, DistributedDataParallel, torch.compile)."""
from __future__ import annotations

import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside any nesting of ``torch.compile``, DataParallel and DDP wrappers.

    Code that needs the model's own methods (``forward_with_features``, its subspace layers, its
    state dict without a ``module.`` prefix) calls this once instead of guessing attribute names.
    """
    while True:
        if isinstance(model, (nn.DataParallel, DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model
