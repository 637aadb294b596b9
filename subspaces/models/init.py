"""Conv initialisations by name (``--conv-init``), applied to every conv endpoint independently."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from subspaces.utils.errors import unknown_name


def get_init(name: str, mode: str = "fan_in", nonlinearity: str = "relu") -> Callable[[torch.Tensor], object]:
    """The initialisation function ``--conv-init`` names (kaiming_normal as in the paper)."""
    inits = {
        "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, mode=mode, nonlinearity=nonlinearity),
        "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, mode=mode, nonlinearity=nonlinearity),
        "xavier_normal": nn.init.xavier_normal_,
        "xavier_uniform": nn.init.xavier_uniform_,
        "default": lambda w: None,  # keep the layer's own PyTorch default
    }
    if name not in inits:
        raise unknown_name("conv init", name, list(inits), "--conv-init")
    return inits[name]
