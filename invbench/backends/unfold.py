"""`unfold`: the reference algorithm of the official code (unfold, multiply, sum)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from invbench.backends.base import ALL_FLOATS, InvolutionBackend
from invbench.core.spec import Geometry


def unfold_involution(
    x: torch.Tensor, weight: torch.Tensor, k: int, stride: int, pad: int, dilation: int
) -> torch.Tensor:
    """Materialise every K x K patch (B, C*K*K, Ho*Wo), weight it and sum over the window."""
    b, c, _, _ = x.shape
    g, ho, wo = weight.shape[1], weight.shape[4], weight.shape[5]
    cols = F.unfold(x, k, dilation=dilation, padding=pad, stride=stride)
    cols = cols.view(b, g, c // g, k * k, ho, wo)
    out = (cols * weight.reshape(b, g, 1, k * k, ho, wo)).sum(dim=3)
    return out.reshape(b, c, ho, wo)


class UnfoldBackend(InvolutionBackend):
    name = "unfold"
    description = "official reference algorithm: F.unfold, broadcast multiply, sum (PyTorch eager)"
    dtypes = ALL_FLOATS

    def apply(self, x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
        return unfold_involution(x, weight, geom.kernel_size, geom.stride, geom.pad, geom.dilation)
