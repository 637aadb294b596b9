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

from utils.modules import unwrap


@torch.no_grad()
def update_bn(loader: Iterable, model: nn.Module, device: "torch.device | str | None" = None) -> None:
    """Recompute the running mean/var of every BatchNorm of ``model`` over ``loader``."""
    # Through torch.compile's wrapper every batch would recompile (the cumulative average reads the
    # batch count as a Python number): recompute on the module inside (DataParallel's too).
    _swa_update_bn(loader, unwrap(model), device=device)
