"""TinyImageNet ResNets for 64x64 inputs: ``TinyImageNetResNet18`` and ``TinyImageNetResNet50``.

As in the original (after Synaptic-Flow): a 3x3 stride-1 stem without max pooling, four stages
(the first at stride 1, the others at stride 2), a 1x1 conv shortcut with BatchNorm where the
shape changes, global average pooling and a 1x1 conv without bias as the classifier. Module names
follow the original (``conv1.0``, ``conv2_x.0.residual_function.0``, ``...shortcut.0``, ``fc``)
so its checkpoints load by name; 200 classes by default.

``width_mult`` scales every stage's width (64, 128, 256, 512 at 1.0), for quick tests.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Net
from .builder import Builder
from .registry import register_model


def _scaled(channels: int, width_mult: float) -> int:
    return max(1, int(round(channels * width_mult)))


def _shortcut(builder: Builder, in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    if stride != 1 or in_channels != out_channels:
        return nn.Sequential(builder.conv1x1(in_channels, out_channels, stride=stride), builder.batchnorm(out_channels))
    return nn.Sequential()


class _Block(nn.Module):
    """A residual block: ``relu(residual_function(x) + shortcut(x))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual_function(x)  # ends in a BatchNorm: its output may be changed in place
        out += self.shortcut(x)
        return out.relu_()


class BasicBlock(_Block):
    """Two 3x3 convs (ResNet18); ``residual_function`` holds conv, bn, relu, conv, bn."""

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int, base_width: int, builder: Builder):
        super().__init__()
        out = out_channels * self.expansion
        self.residual_function = nn.Sequential(
            builder.conv3x3(in_channels, out_channels, stride=stride),
            builder.batchnorm(out_channels),
            nn.ReLU(inplace=True),
            builder.conv3x3(out_channels, out),
            builder.batchnorm(out),
        )
        self.shortcut = _shortcut(builder, in_channels, out, stride)


class BottleNeck(_Block):
    """1x1 -> 3x3 (strided) -> 1x1 (x4 channels) (ResNet50); indices 0, 3, 6 are the convs."""

    expansion = 4

    def __init__(self, in_channels: int, out_channels: int, stride: int, base_width: int, builder: Builder):
        super().__init__()
        width = int(out_channels * (base_width / 64.0))
        out = out_channels * self.expansion
        self.residual_function = nn.Sequential(
            builder.conv1x1(in_channels, width),
            builder.batchnorm(width),
            nn.ReLU(inplace=True),
            builder.conv3x3(width, width, stride=stride),
            builder.batchnorm(width),
            nn.ReLU(inplace=True),
            builder.conv1x1(width, out),
            builder.batchnorm(out),
        )
        self.shortcut = _shortcut(builder, in_channels, out, stride)


class TinyImageNetResNet(Net):
    """The TinyImageNet ResNet body; subclasses fix the block and the stage depths."""

    block: type = BasicBlock
    num_block: tuple = (2, 2, 2, 2)
    base_width: int = 64

    def __init__(
        self,
        builder: Builder,
        output_size: int = 200,
        in_channels: int = 3,
        model_name: str | None = None,
        width_mult: float = 1.0,
        dropout: float = 0.0,
    ):
        # model_name and dropout are accepted for the common interface; these models have neither.
        super().__init__()
        stem = _scaled(64, width_mult)
        self.conv1 = nn.Sequential(builder.conv3x3(in_channels, stem), builder.batchnorm(stem), nn.ReLU(inplace=True))
        self.in_channels = stem
        # 64x64 inputs: the first stage keeps the resolution (stride 1), unlike the ImageNet ResNet.
        self.conv2_x = self._make_layer(builder, _scaled(64, width_mult), self.num_block[0], 1)
        self.conv3_x = self._make_layer(builder, _scaled(128, width_mult), self.num_block[1], 2)
        self.conv4_x = self._make_layer(builder, _scaled(256, width_mult), self.num_block[2], 2)
        self.conv5_x = self._make_layer(builder, _scaled(512, width_mult), self.num_block[3], 2)
        self.num_features = self.in_channels
        self.fc = builder.conv1x1(self.in_channels, output_size)

    def _make_layer(self, builder: Builder, out_channels: int, num_blocks: int, stride: int) -> nn.Sequential:
        blocks = []
        for s in [stride] + [1] * (num_blocks - 1):
            blocks.append(self.block(self.in_channels, out_channels, s, self.base_width, builder))
            self.in_channels = out_channels * self.block.expansion
        return nn.Sequential(*blocks)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv5_x(self.conv4_x(self.conv3_x(self.conv2_x(self.conv1(x)))))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(feats[:, :, None, None]).flatten(1)


@register_model
class TinyImageNetResNet18(TinyImageNetResNet):
    """ResNet-18 for TinyImageNet: basic-block stages of 2, 2, 2, 2 blocks."""

    block = BasicBlock
    num_block = (2, 2, 2, 2)


@register_model
class TinyImageNetResNet50(TinyImageNetResNet):
    """ResNet-50 for TinyImageNet: bottleneck stages of 3, 4, 6, 3 blocks."""

    block = BottleNeck
    num_block = (3, 4, 6, 3)
