"""A small all-conv network sized for the embedded Digits set (8x8 grey images)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import ModelSpec, Net
from .builder import Builder
from .registry import register_model


@register_model
class DigitsConvNet(Net):
    """Four 3x3 conv + BatchNorm layers (two with stride 2), average pooling, a 1x1 conv head.

    Every layer is a conv, so the whole network is a subspace and Eq. 3 covers it all. About 0.1M
    parameters per endpoint at width 32: a training epoch on Digits takes well under a second.
    """

    def __init__(self, builder: Builder, spec: ModelSpec):
        super().__init__()
        w = spec.width(32)
        plan = [(spec.in_channels, w, 1), (w, 2 * w, 2), (2 * w, 2 * w, 1), (2 * w, 4 * w, 2)]
        self.convs = nn.ModuleList(builder.conv3x3(i, o, stride=s) for i, o, s in plan)
        self.bns = nn.ModuleList(builder.batchnorm(o) for _, o, _ in plan)
        self.dropout = nn.Dropout(spec.dropout) if spec.dropout > 0 else nn.Identity()
        self.fc = builder.conv1x1(4 * w, spec.output_size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in zip(self.convs, self.bns):
            x = bn(conv(x)).relu_()
        return self.dropout(F.adaptive_avg_pool2d(x, 1).flatten(1))
