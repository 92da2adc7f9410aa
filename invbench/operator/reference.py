"""Float64 reference of involution, used to check every backend.

It shares no code with any backend: it walks the K x K window offsets and
multiplies strided views of the zero-padded input, in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from invbench.core.spec import Geometry


def involution_reference(x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """out[b,c,i,j] = sum_{u,v} weight[b,g(c),u,v,i,j] * x[b,c,i*s-p+u*d,j*s-p+v*d], in float64.

    Differentiable, so autograd of this function is the gradient reference.
    """
    x64 = x.to(torch.float64)
    w64 = weight.to(torch.float64)
    b, c, g, k = geom.batch, geom.channels, geom.groups, geom.kernel_size
    ho, wo, s, d, p = geom.out_height, geom.out_width, geom.stride, geom.dilation, geom.pad
    xp = F.pad(x64, (p, p, p, p))
    out = x64.new_zeros(b, g, c // g, ho, wo)
    for u in range(k):
        for v in range(k):
            rows = slice(u * d, u * d + (ho - 1) * s + 1, s)
            cols = slice(v * d, v * d + (wo - 1) * s + 1, s)
            patch = xp[:, :, rows, cols].reshape(b, g, c // g, ho, wo)
            out = out + patch * w64[:, :, u, v].unsqueeze(2)
    return out.reshape(b, c, ho, wo)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|; inf when actual has NaN or Inf."""
    a = actual.detach().to(torch.float64).cpu()
    e = expected.detach().to(torch.float64).cpu()
    if a.shape != e.shape:
        raise ValueError(f"shape mismatch: {tuple(a.shape)} vs {tuple(e.shape)}")
    if not torch.isfinite(a).all():
        return float("inf")
    scale = e.abs().max().item()
    err = (a - e).abs().max().item()
    return err / scale if scale > 0 else err
