"""The interface every model has: the flags it is built from, penultimate features and a classifier."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from .builder import Builder

# The channels of a ResNet's four stages (before a bottleneck's expansion), at --width-mult 1.
STAGE_WIDTHS = (64, 128, 256, 512)


@dataclass(frozen=True)
class ModelSpec:
    """The model flags a registered model is built from, besides the builder's layer types.

    Every model takes ``output_size`` (classes), ``in_channels`` and ``width_mult`` (every width
    scaled, for quick tests); ``model_name`` (the CIFAR ResNets' depth and width) and ``dropout``
    (Digits, the CIFAR ResNet with dropout) only where the model has them.
    """

    output_size: int
    in_channels: int = 3
    model_name: Optional[str] = None
    width_mult: float = 1.0
    dropout: float = 0.0

    def width(self, channels: int) -> int:
        """``channels`` scaled by ``width_mult``, at least 1."""
        return max(1, int(round(channels * self.width_mult)))


class Net(nn.Module):
    """A classifier split into ``features`` (penultimate, ``(B, F)``) and ``classify``.

    ``forward`` returns logits; ``forward_with_features`` returns ``(logits, features)``, the
    features being the classifier's input (used for the feature cosine similarity, Figure 4).
    """

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        """The models here classify with a 1x1 conv ``fc`` (so Eq. 3 covers the classifier too)."""
        return self.fc(feats[:, :, None, None]).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))

    def forward_with_features(self, x: torch.Tensor) -> tuple:
        """``(logits, penultimate features)`` in one pass."""
        f = self.features(x)
        return self.classify(f), f


class ResNetBody(Net):
    """A ResNet (He et al. 2016): a stem, four stages of residual blocks (``STAGE_WIDTHS`` channels
    before the blocks' expansion, the last three at stride 2), global average pooling and the 1x1
    conv classifier ``fc``. Subclasses make the stem and a stage, and name the stages (as the
    original's model files do, so its checkpoints load by name)."""

    stage_names: tuple  # the stages' module names
    block: type  # the residual block
    depths: tuple  # blocks per stage
    base_width: int = 64  # a bottleneck's inner width at 64 planes (128: the wide ResNets)

    def __init__(self, builder: Builder, spec: ModelSpec):
        super().__init__()
        self.channels = spec.width(STAGE_WIDTHS[0])  # the stem's output: what the next block takes
        self.make_stem(builder, spec.in_channels, self.channels)
        for name, width, depth, stride in zip(self.stage_names, STAGE_WIDTHS, self.depths, (1, 2, 2, 2)):
            self.add_module(name, self.make_stage(builder, spec.width(width), depth, stride))
        self.num_features = self.channels
        self.fc = builder.conv1x1(self.channels, spec.output_size)

    def make_stem(self, builder: Builder, in_channels: int, width: int) -> None:
        """Make the stem's modules: ``in_channels`` in, ``width`` out."""
        raise NotImplementedError

    def make_stage(self, builder: Builder, width: int, depth: int, stride: int) -> nn.Sequential:
        """``depth`` blocks of ``width`` channels (before expansion), the first at ``stride``;
        updates ``self.channels``."""
        raise NotImplementedError

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)
