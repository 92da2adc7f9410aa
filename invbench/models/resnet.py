"""Bottleneck networks: ResNet-26/38/50/101 and, with involution in the middle, RedNet.

Both follow the common "pytorch style" bottleneck (the stride sits on the middle
layer): 1x1 conv C_in -> C, BN, ReLU, middle layer C -> C with the block's stride,
BN, ReLU, 1x1 conv C -> 4C, BN, plus the shortcut (a strided 1x1 conv + BN where
the shape changes), then ReLU. ResNet's middle layer is a 3x3 conv; RedNet's is
``Involution(C, 7, stride)`` (16 channels per group, reduction 4). The stems
differ; see :mod:`invbench.models.rednet`. The head is global average pooling and
a 1000-way linear layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from invbench.core.spec import MODEL_DEPTHS

Family = Literal["resnet", "rednet"]

# Blocks per stage; stages have 64, 128, 256, 512 middle channels and strides 1, 2, 2, 2.
DEPTHS = MODEL_DEPTHS
EXPANSION = 4
STAGE_CHANNELS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)

MiddleFactory = Callable[[int, int], nn.Module]  # (channels, stride) -> C -> C layer


def conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=(k - 1) // 2, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def conv3x3_middle(channels: int, stride: int) -> nn.Module:
    return nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, mid: int, stride: int, middle: MiddleFactory) -> None:
        super().__init__()
        c_out = mid * EXPANSION
        self.conv1 = conv_bn(c_in, mid, 1)
        self.conv2 = middle(mid, stride)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = conv_bn(mid, c_out, 1, relu=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = conv_bn(c_in, c_out, 1, stride=stride, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn2(self.conv2(self.conv1(x))))
        return self.relu(self.conv3(y) + identity)


class Network(nn.Module):
    """Stem, four stages of bottlenecks, global average pool and a linear classifier."""

    def __init__(
        self,
        family: Family,
        depth: int,
        stem: nn.Module,
        middle: MiddleFactory,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.family = family
        self.depth = depth
        self.stem = stem
        c_in = 64
        stages = []
        for mid, stride, blocks in zip(STAGE_CHANNELS, STAGE_STRIDES, DEPTHS[depth], strict=True):
            layers = []
            for i in range(blocks):
                layers.append(Bottleneck(c_in, mid, stride if i == 0 else 1, middle))
                c_in = mid * EXPANSION
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(c_in, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def resnet_stem() -> nn.Module:
    """7x7 conv 3 -> 64 with stride 2, BN, ReLU, 3x3 max pool with stride 2."""
    return nn.Sequential(conv_bn(3, 64, 7, stride=2), nn.MaxPool2d(3, stride=2, padding=1))


def resnet(depth: int, num_classes: int = 1000) -> Network:
    if depth not in DEPTHS:
        raise ValueError(f"no ResNet-{depth} (depths: {', '.join(map(str, DEPTHS))})")
    return Network("resnet", depth, resnet_stem(), conv3x3_middle, num_classes)


def model_names() -> list[str]:
    return [f"{family}-{d}" for family in ("resnet", "rednet") for d in DEPTHS]


def build_model(name: str, backend: str = "unfold", num_classes: int = 1000) -> Network:
    """A model by name ("resnet-50", "rednet-26", ...); backend picks RedNet's aggregation."""
    from invbench.models.rednet import rednet

    family, _, depth_text = name.partition("-")
    if family not in ("resnet", "rednet") or not depth_text.isdigit():
        raise ValueError(f"unknown model {name!r} (known: {', '.join(model_names())})")
    depth = int(depth_text)
    if family == "resnet":
        return resnet(depth, num_classes)
    return rednet(depth, backend=backend, num_classes=num_classes)
