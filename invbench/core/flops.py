"""Analytic FLOPs and fewest bytes moved (each input read once, each output written once).

Formulas follow the operator's definition: a forward aggregation is B*C*K^2*Ho*Wo
multiply-adds; the backward pass does two more of those (grad_x and grad_weight).
"""

from __future__ import annotations

from dataclasses import dataclass

from invbench.core.spec import Geometry, Mode


@dataclass(frozen=True)
class Cost:
    flops: int
    bytes: int


def _fwd_bwd_bytes(x: int, w: int, out: int, itemsize: int) -> int:
    # forward: read x, w; write out. backward: read grad_out, x, w; write grad_x, grad_w.
    return itemsize * (x + w + out + out + x + w + x + w)


def involution_cost(geom: Geometry, itemsize: int, mode: Mode) -> Cost:
    x, w, out = geom.numel("x"), geom.numel("weight"), geom.numel("out")
    macs = out * geom.kernel_size**2
    if mode is Mode.FWD:
        return Cost(flops=2 * macs, bytes=itemsize * (x + w + out))
    return Cost(flops=6 * macs, bytes=_fwd_bwd_bytes(x, w, out, itemsize))


def conv_cost(
    geom: Geometry, itemsize: int, mode: Mode, kernel_size: int, in_per_group: int
) -> Cost:
    """A C -> C conv with the layer's output grid; in_per_group input channels per output."""
    x, out = geom.numel("x"), geom.numel("out")
    w = geom.channels * in_per_group * kernel_size**2
    macs = out * in_per_group * kernel_size**2
    if mode is Mode.FWD:
        return Cost(flops=2 * macs, bytes=itemsize * (x + w + out))
    return Cost(flops=6 * macs, bytes=_fwd_bwd_bytes(x, w, out, itemsize))
