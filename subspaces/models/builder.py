"""The builder models are made through: it creates conv, BatchNorm and linear layers of the types
named on the command line (``--conv-type``, ``--bn-type``), so one model definition serves
standard training, lines, curves and simplexes."""
from __future__ import annotations

import torch.nn as nn

from subspaces.modes.modules import coefficients_of, get_layer_type, linear_type_for

from .init import get_init


class Builder:
    """Makes layers of the chosen types, each conv endpoint initialised with ``conv_init``."""

    def __init__(
        self,
        conv_type: str = "StandardConv",
        bn_type: str = "StandardBN",
        conv_init: str = "kaiming_normal",
        mode: str = "fan_in",
        nonlinearity: str = "relu",
    ):
        self.conv_layer = get_layer_type(conv_type, "Conv")
        self.bn_layer = get_layer_type(bn_type, "BN")
        self.linear_layer = get_layer_type(linear_type_for(conv_type), "Linear")
        self.conv_init = get_init(conv_init, mode, nonlinearity)
        if coefficients_of(self.conv_layer) != coefficients_of(self.bn_layer):
            from subspaces.utils.errors import UserError

            raise UserError(
                f"--conv-type {conv_type} and --bn-type {bn_type} are different kinds of subspace; "
                f"pass matching types (e.g. LinesConv with LinesBN)"
            )

    def conv(self, kernel_size: int, in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
        """A conv with 'same' padding; every endpoint gets ``conv_init``."""
        conv = self.conv_layer(
            in_planes, out_planes, kernel_size=kernel_size, stride=stride, padding=kernel_size // 2, groups=groups, bias=bias
        )
        self.conv_init(conv.weight)
        if hasattr(conv, "initialize"):
            conv.initialize(self.conv_init)
        return conv

    def conv1x1(self, in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
        """1x1 convolution."""
        return self.conv(1, in_planes, out_planes, stride, groups, bias)

    def conv3x3(self, in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
        """3x3 convolution with padding 1."""
        return self.conv(3, in_planes, out_planes, stride, groups, bias)

    def conv7x7(self, in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
        """7x7 convolution with padding 3."""
        return self.conv(7, in_planes, out_planes, stride, groups, bias)

    def batchnorm(self, planes: int, zero_init: bool = False) -> nn.BatchNorm2d:
        """A BatchNorm layer; ``zero_init`` starts every endpoint's weight at 0 (residual branches)."""
        bn = self.bn_layer(planes)
        if zero_init:
            for name, p in bn.named_parameters():
                if name.startswith("weight"):
                    nn.init.zeros_(p)
        return bn

    def linear(self, in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
        """A linear layer of the subspace kind matching the conv type."""
        return self.linear_layer(in_features, out_features, bias=bias)
