"""Optimisers by name (``--optimizer``)."""
from __future__ import annotations

import torch
import torch.nn as nn

from subspaces.utils.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer", "--optimizer")


@OPTIMIZERS.register(name="sgd")
def sgd(settings, params: list) -> torch.optim.Optimizer:
    """The paper's SGD: momentum, no Nesterov, weight decay."""
    return torch.optim.SGD(params, settings.lr, momentum=settings.momentum, weight_decay=settings.wd, nesterov=False)


@OPTIMIZERS.register(name="adam")
def adam(settings, params: list) -> torch.optim.Optimizer:
    """Adam with L2 weight decay."""
    return torch.optim.Adam(params, settings.lr, weight_decay=settings.wd)


def get_optimizer(settings, model: nn.Module) -> "torch.optim.Optimizer | None":
    """The ``--optimizer`` over the model's trainable parameters; None if it has none."""
    make = OPTIMIZERS.get(settings.optimizer)
    params = [p for p in model.parameters() if p.requires_grad]
    return make(settings, params) if params else None
