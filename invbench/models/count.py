"""Parameter and multiply-accumulate counts of a model, by forward hooks.

Convention: the published "GFLOPs" of ResNet and RedNet are multiply-accumulates
(MACs), so these are MACs, per image. Two totals:

- ``macs``: every Conv2d (output elements x input channels per group x kernel
  area), every Linear (in x out) and every involution's aggregation (output
  elements x K^2; its kernel-generation convs are Conv2d and counted as such).
  The usual ResNet accounting (ResNet-50: 4.09 G).
- ``macs_with_elementwise``: the above plus the per-element terms the mmcv/mmcls
  counter adds, which the published RedNet numbers were made with: conv biases
  (one per output element), BatchNorm (two per input element when affine), ReLU
  (one per output element) and max pooling (one per input element).

The forward pass runs under a fake-tensor mode: shapes only, no arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from invbench.operator.ops import Involution


@dataclass(frozen=True)
class ModelCost:
    params: int
    macs: int  # conv + linear + involution aggregation
    involution_macs: int  # the aggregation part of macs
    elementwise_macs: int  # biases, BN, ReLU, pooling (the mmcv counter's extras)

    @property
    def macs_with_elementwise(self) -> int:
        return self.macs + self.elementwise_macs


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image_size: int | tuple[int, int] = 224) -> ModelCost:
    """Parameters and per-image MACs of model on 3 x H x W images (image_size: H = W, or (H, W))."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size

    totals = {"dense": 0, "inv": 0, "elementwise": 0}

    def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        x = inputs[0]
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            totals["dense"] += out.numel() * (m.in_channels // m.groups) * kh * kw
            if m.bias is not None:
                totals["elementwise"] += out.numel()
        elif isinstance(m, nn.Linear):
            totals["dense"] += x.numel() * m.out_features
        elif isinstance(m, Involution):
            totals["inv"] += out.numel() * m.kernel_size**2
        elif isinstance(m, nn.BatchNorm2d):
            totals["elementwise"] += x.numel() * (2 if m.affine else 1)
        elif isinstance(m, nn.ReLU):
            totals["elementwise"] += out.numel()
        elif isinstance(m, nn.MaxPool2d):
            totals["elementwise"] += x.numel()

    counted = (nn.Conv2d, nn.Linear, Involution, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, counted)]
    was_training = model.training
    try:
        model.eval()
        with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad():
            model(torch.zeros(1, 3, h, w))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return ModelCost(
        params=count_params(model),
        macs=totals["dense"] + totals["inv"],
        involution_macs=totals["inv"],
        elementwise_macs=totals["elementwise"],
    )
