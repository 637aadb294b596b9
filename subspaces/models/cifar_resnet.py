"""The CIFAR ResNet (He et al. 2016, as in open_lth and the original subspaces code).

``--model-name cifar_resnet_<depth>[_<width>]``: depth 6n+2, base width 16 by default; the last
layer is a 1x1 conv, so every layer is a conv and Eq. 3 covers the classifier too. Module names
follow the original (``conv``, ``bn``, ``blocks.<i>.conv1``, ..., ``fc``) so its checkpoints load.
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from subspaces.utils.errors import UserError

from .base import ModelSpec, Net
from .builder import Builder
from .registry import register_model

_NAME = re.compile(r"^cifar_resnet_(\d+)(?:_(\d+))?$")


def parse_cifar_resnet_name(model_name: str | None) -> tuple:
    """``cifar_resnet_<D>[_<W>]`` -> (blocks per stage, width); UserError names the fix."""
    m = _NAME.match(model_name or "")
    if not m:
        raise UserError(f"--model-name {model_name!r} is not cifar_resnet_<depth>[_<width>] (e.g. cifar_resnet_20)")
    depth, width = int(m.group(1)), int(m.group(2) or 16)
    if depth < 8 or (depth - 2) % 6 != 0:
        raise UserError(f"CIFAR ResNet depth {depth} is not 6n+2 (8, 14, 20, 32, 44, 56, 110, ...); fix --model-name")
    return (depth - 2) // 6, width


class Block(nn.Module):
    """A residual block: two 3x3 convs; a 1x1 conv shortcut when the shape changes."""

    def __init__(self, f_in: int, f_out: int, downsample: bool, builder: Builder, dropout: float = 0.0):
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = builder.conv3x3(f_in, f_out, stride=stride)
        self.bn1 = builder.batchnorm(f_out)
        self.conv2 = builder.conv3x3(f_out, f_out)
        self.bn2 = builder.batchnorm(f_out)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if downsample or f_in != f_out:
            self.shortcut = nn.Sequential(builder.conv1x1(f_in, f_out, stride=stride), builder.batchnorm(f_out))
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place where autograd allows (BatchNorm's backward keeps its input, not its output), as
        # the original's ``out +=``: one memory pass and one allocation less per op.
        out = self.bn1(self.conv1(x)).relu_()
        out = self.dropout(self.bn2(self.conv2(out)))  # as the original: on the residual branch, before the add
        out += self.shortcut(x)
        return out.relu_()


@register_model
class CIFARResNet(Net):
    """ResNet for 32x32 inputs (``cifar_resnet_20`` has 0.27M parameters per endpoint)."""

    block_dropout = False

    def __init__(self, builder: Builder, spec: ModelSpec):
        super().__init__()
        num_blocks, width = parse_cifar_resnet_name(spec.model_name or "cifar_resnet_20")
        width = spec.width(width)
        plan = [(width, num_blocks), (2 * width, num_blocks), (4 * width, num_blocks)]
        block_p = spec.dropout if self.block_dropout else 0.0
        self.conv = builder.conv3x3(spec.in_channels, width)
        self.bn = builder.batchnorm(width)
        blocks, current = [], width
        for stage, (filters, count) in enumerate(plan):
            for i in range(count):
                blocks.append(Block(current, filters, stage > 0 and i == 0, builder, block_p))
                current = filters
        self.blocks = nn.Sequential(*blocks)
        self.fc = builder.conv1x1(current, spec.output_size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(self.bn(self.conv(x)).relu_())
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


@register_model
class CIFARResNetDropout(CIFARResNet):
    """The CIFAR ResNet with dropout (``--dropout``) on every block's residual branch, after ``bn2``
    and before the shortcut is added (as the original's ``cifar_resnet_dropout.py``)."""

    block_dropout = True
