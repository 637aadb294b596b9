"""ImageNet ResNets (He et al. 2016) for 224x224 inputs: ``ResNet18``, ``ResNet50``, ``ResNet101``,
``WideResNet50_2`` and ``WideResNet101_2`` (the original's ImageNet model file defines all five).

As in the original: a 7x7 stride-2 stem with max pooling, four stages of residual blocks (basic
blocks of two 3x3 convs for ResNet-18, bottlenecks otherwise, the stride on the 3x3 conv), a 1x1 conv shortcut with BatchNorm where the shape changes, global
average pooling, and a 1x1 conv without bias as the classifier (so Eq. 3 covers it too). No
BatchNorm is zero-initialised. Module names follow the original (``conv1``, ``bn1``,
``layer1.0.conv1``, ``layer1.0.downsample.0``, ``fc``) so its checkpoints load by name.

``width_mult`` scales every stage's width (64, 128, 256, 512 at 1.0), for quick tests.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .base import ResNetBody
from .builder import Builder
from .registry import register_model


class BasicBlock(nn.Module):
    """3x3 (strided) -> 3x3, ResNet-18's block; it has no bottleneck, so no wide variant."""

    expansion = 1

    def __init__(self, builder: Builder, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, base_width: int = 64):
        super().__init__()
        if base_width != 64:
            raise ValueError("a basic block has no bottleneck to widen: base_width must be 64")
        self.conv1 = builder.conv3x3(inplanes, planes, stride=stride)
        self.bn1 = builder.batchnorm(planes)
        self.conv2 = builder.conv3x3(planes, planes)
        self.bn2 = builder.batchnorm(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(x)).relu_()
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)
        return out.relu_()


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 (x4 channels); ``base_width`` 128 gives the wide variant."""

    expansion = 4

    def __init__(self, builder: Builder, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, base_width: int = 64):
        super().__init__()
        width = int(planes * base_width / 64)
        self.conv1 = builder.conv1x1(inplanes, width)
        self.bn1 = builder.batchnorm(width)
        self.conv2 = builder.conv3x3(width, width, stride=stride)
        self.bn2 = builder.batchnorm(width)
        self.conv3 = builder.conv1x1(width, planes * self.expansion)
        self.bn3 = builder.batchnorm(planes * self.expansion)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(x)).relu_()  # in place: BatchNorm's backward keeps its input only
        out = self.bn2(self.conv2(out)).relu_()
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return out.relu_()


class ResNet(ResNetBody):
    """The ImageNet ResNet: a 7x7 stride-2 stem with max pooling; subclasses fix the block, the
    stage depths and the base width."""

    stage_names = ("layer1", "layer2", "layer3", "layer4")

    def make_stem(self, builder: Builder, in_channels: int, width: int) -> None:
        self.conv1 = builder.conv7x7(in_channels, width, stride=2)
        self.bn1 = builder.batchnorm(width)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.bn1(self.conv1(x)).relu_())

    def make_stage(self, builder: Builder, planes: int, blocks: int, stride: int) -> nn.Sequential:
        block = self.block
        downsample = None
        if stride != 1 or self.channels != planes * block.expansion:
            downsample = nn.Sequential(
                builder.conv1x1(self.channels, planes * block.expansion, stride=stride),
                builder.batchnorm(planes * block.expansion),
            )
        layers = [block(builder, self.channels, planes, stride, downsample, base_width=self.base_width)]
        self.channels = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(builder, self.channels, planes, base_width=self.base_width))
        return nn.Sequential(*layers)


def _variant(name: str, block: type, depths: tuple, base_width: int, doc: str) -> type:
    """A registered ResNet with these stages: ``block`` repeated ``depths[i]`` times in stage i."""
    attrs = {"block": block, "depths": depths, "base_width": base_width, "__doc__": doc, "__module__": __name__, "__qualname__": name}
    return register_model(type(name, (ResNet,), attrs))


ResNet18 = _variant("ResNet18", BasicBlock, (2, 2, 2, 2), 64, "ResNet-18: basic-block stages of 2, 2, 2, 2 blocks (11.7M parameters per endpoint).")
ResNet50 = _variant("ResNet50", Bottleneck, (3, 4, 6, 3), 64, "ResNet-50: bottleneck stages of 3, 4, 6, 3 blocks (25.6M parameters per endpoint).")
WideResNet50_2 = _variant("WideResNet50_2", Bottleneck, (3, 4, 6, 3), 128,
                          "Wide ResNet-50-2: ResNet-50 with bottlenecks twice as wide (68.9M parameters per endpoint).")
ResNet101 = _variant("ResNet101", Bottleneck, (3, 4, 23, 3), 64, "ResNet-101: bottleneck stages of 3, 4, 23, 3 blocks (44.5M parameters per endpoint).")
WideResNet101_2 = _variant("WideResNet101_2", Bottleneck, (3, 4, 23, 3), 128,
                           "Wide ResNet-101-2: ResNet-101 with bottlenecks twice as wide (126.9M parameters per endpoint).")
