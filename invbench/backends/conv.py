"""Convolution baselines: what involution replaces (`conv3x3`) and a cheap cousin (`dwconv`)."""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from invbench.backends.base import Backend, Closure, Workload
from invbench.core import flops
from invbench.core.spec import Dtype, Geometry, Kind, Mode


class _ConvBaseline(Backend):
    kind = Kind.BASELINE

    def conv_geometry(self, geom: Geometry) -> Geometry:
        raise NotImplementedError

    def conv_weight(self, work: Workload) -> torch.Tensor:
        raise NotImplementedError

    def cost(self, geom: Geometry, dtype: Dtype, mode: Mode) -> flops.Cost:
        cg = self.conv_geometry(geom)
        per_group = cg.channels // cg.groups
        return flops.conv_cost(cg, dtype.itemsize, mode, cg.kernel_size, per_group)

    def build(self, work: Workload) -> Closure:
        if work.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        cg = self.conv_geometry(work.geom)
        x = work.x
        w = self.conv_weight(work).requires_grad_(work.mode is Mode.FWD_BWD)
        stride, pad, dil, groups = cg.stride, cg.pad, cg.dilation, cg.groups

        def conv() -> torch.Tensor:
            return F.conv2d(x, w, stride=stride, padding=pad, dilation=dil, groups=groups)

        if work.mode is Mode.FWD:

            def fwd() -> tuple[torch.Tensor, ...]:
                with torch.no_grad():
                    return (conv(),)

            return fwd
        grad_out = work.grad_out
        if tuple(grad_out.shape) != cg.out_shape:
            grad_out = torch.randn(cg.out_shape, dtype=x.dtype, device=x.device)

        def fwd_bwd() -> tuple[torch.Tensor, ...]:
            out = conv()
            gx, gw = torch.autograd.grad(out, (x, w), grad_out)
            return (out.detach(), gx, gw)

        return fwd_bwd


class Conv3x3Backend(_ConvBaseline):
    name = "conv3x3"
    description = (
        "dense 3x3 conv C -> C with the layer's stride (what involution replaces in ResNet)"
    )

    def conv_geometry(self, geom: Geometry) -> Geometry:
        return replace(geom, kernel_size=3, dilation=1, padding=1, groups=1)

    def conv_weight(self, work: Workload) -> torch.Tensor:
        c = work.geom.channels
        scale = (9 * c) ** -0.5
        return torch.randn(c, c, 3, 3, dtype=work.x.dtype, device=work.device) * scale


class DepthwiseConvBackend(_ConvBaseline):
    name = "dwconv"
    description = (
        "depthwise K x K conv with the layer's stride and dilation (one shared kernel per channel)"
    )

    def conv_geometry(self, geom: Geometry) -> Geometry:
        return replace(geom, groups=geom.channels)

    def conv_weight(self, work: Workload) -> torch.Tensor:
        g = work.geom
        k = g.kernel_size
        return torch.randn(g.channels, 1, k, k, dtype=work.x.dtype, device=work.device) / k
