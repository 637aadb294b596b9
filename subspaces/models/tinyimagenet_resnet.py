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

from .base import ResNetBody
from .builder import Builder
from .registry import register_model


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


def _residual_function(builder: Builder, plan: list) -> nn.Sequential:
    """conv, bn, relu for each ``(conv, in, out, stride)`` of ``plan``, without the last relu
    (the block adds the shortcut first): the original's indices, convs at 0, 3, 6."""
    layers = []
    for conv, c_in, c_out, stride in plan:
        layers += [conv(c_in, c_out, stride=stride), builder.batchnorm(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers[:-1])


class BasicBlock(_Block):
    """Two 3x3 convs (ResNet18); ``residual_function`` holds conv, bn, relu, conv, bn."""

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int, base_width: int, builder: Builder):
        super().__init__()
        out = out_channels * self.expansion
        plan = [(builder.conv3x3, in_channels, out_channels, stride), (builder.conv3x3, out_channels, out, 1)]
        self.residual_function = _residual_function(builder, plan)
        self.shortcut = _shortcut(builder, in_channels, out, stride)


class BottleNeck(_Block):
    """1x1 -> 3x3 (strided) -> 1x1 (x4 channels) (ResNet50); indices 0, 3, 6 are the convs."""

    expansion = 4

    def __init__(self, in_channels: int, out_channels: int, stride: int, base_width: int, builder: Builder):
        super().__init__()
        width = int(out_channels * (base_width / 64.0))
        out = out_channels * self.expansion
        plan = [(builder.conv1x1, in_channels, width, 1), (builder.conv3x3, width, width, stride), (builder.conv1x1, width, out, 1)]
        self.residual_function = _residual_function(builder, plan)
        self.shortcut = _shortcut(builder, in_channels, out, stride)


class TinyImageNetResNet(ResNetBody):
    """The TinyImageNet ResNet: a 3x3 stride-1 stem without max pooling, so the first stage keeps
    the 64x64 resolution; subclasses fix the block and the stage depths."""

    stage_names = ("conv2_x", "conv3_x", "conv4_x", "conv5_x")

    def make_stem(self, builder: Builder, in_channels: int, width: int) -> None:
        self.conv1 = nn.Sequential(builder.conv3x3(in_channels, width), builder.batchnorm(width), nn.ReLU(inplace=True))

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(x)

    def make_stage(self, builder: Builder, out_channels: int, num_blocks: int, stride: int) -> nn.Sequential:
        blocks = []
        for s in [stride] + [1] * (num_blocks - 1):
            blocks.append(self.block(self.channels, out_channels, s, self.base_width, builder))
            self.channels = out_channels * self.block.expansion
        return nn.Sequential(*blocks)


@register_model
class TinyImageNetResNet18(TinyImageNetResNet):
    """ResNet-18 for TinyImageNet: basic-block stages of 2, 2, 2, 2 blocks."""

    block = BasicBlock
    depths = (2, 2, 2, 2)


@register_model
class TinyImageNetResNet50(TinyImageNetResNet):
    """ResNet-50 for TinyImageNet: bottleneck stages of 3, 4, 6, 3 blocks."""

    block = BottleNeck
    depths = (3, 4, 6, 3)
