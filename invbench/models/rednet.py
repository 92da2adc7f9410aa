"""RedNet: the bottleneck network with every 3x3 conv replaced by involution.

Stem as in the official RedNet: 3x3 conv 3 -> 32 with stride 2, BN, ReLU;
involution(32, K=3, stride 1), BN, ReLU; 3x3 conv 32 -> 64, BN, ReLU; 3x3 max pool
with stride 2. Each bottleneck's middle layer is ``Involution(C, 7, stride)``.
"""

from __future__ import annotations

from torch import nn

from invbench.models.resnet import DEPTHS, Network, conv_bn
from invbench.operator.ops import Involution


def rednet_stem(backend: str = "unfold") -> nn.Module:
    return nn.Sequential(
        conv_bn(3, 32, 3, stride=2),
        Involution(32, 3, 1, backend=backend),
        nn.BatchNorm2d(32),
        nn.ReLU(inplace=True),
        conv_bn(32, 64, 3),
        nn.MaxPool2d(3, stride=2, padding=1),
    )


def rednet(depth: int, backend: str = "unfold", num_classes: int = 1000) -> Network:
    if depth not in DEPTHS:
        raise ValueError(f"no RedNet-{depth} (depths: {', '.join(map(str, DEPTHS))})")

    def middle(channels: int, stride: int) -> nn.Module:
        return Involution(channels, 7, stride, backend=backend)

    return Network("rednet", depth, rednet_stem(backend), middle, num_classes)
