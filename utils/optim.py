"""Optimisers by name (``--optimizer``)."""
from __future__ import annotations

import torch
import torch.nn as nn

from utils.errors import unknown_name


def get_optimizer(settings, model: nn.Module) -> "torch.optim.Optimizer | None":
    """SGD (the paper's: momentum, no Nesterov) or Adam over the trainable parameters; None if none."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return None
    if settings.optimizer == "sgd":
        return torch.optim.SGD(params, settings.lr, momentum=settings.momentum, weight_decay=settings.wd, nesterov=False)
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, settings.lr, weight_decay=settings.wd)
    raise unknown_name("optimizer", settings.optimizer, ["sgd", "adam"], "--optimizer")
