"""The public operator and layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from invbench.backends.base import InvolutionBackend
from invbench.backends.registry import Registry, default_registry
from invbench.core.spec import DeviceKind, Dtype
from invbench.operator.validate import check_involution_args

_TORCH_TO_DTYPE = {
    torch.float32: Dtype.FLOAT32,
    torch.float16: Dtype.FLOAT16,
    torch.bfloat16: Dtype.BFLOAT16,
    torch.float64: Dtype.FLOAT64,
}


def resolve_involution_backend(
    name: str, x: torch.Tensor, registry: Registry | None = None
) -> InvolutionBackend:
    """The named involution backend, or a ValueError saying why it cannot take x."""
    backend = (registry or default_registry()).get(name)
    if not isinstance(backend, InvolutionBackend):
        raise ValueError(f"backend {name!r} is a {backend.kind.value}, not an involution backend")
    device = DeviceKind(x.device.type) if x.device.type in ("cpu", "cuda") else None
    if device is None:
        raise ValueError(f"device {x.device} is not supported (cpu or cuda)")
    dtype = _TORCH_TO_DTYPE.get(x.dtype)
    reason = backend.availability(device, dtype)
    if reason is not None:
        raise ValueError(f"backend {name!r} cannot run on {x.device}/{x.dtype}: {reason}")
    return backend


def involution(
    x: torch.Tensor,
    weight: torch.Tensor,
    *,
    stride: int = 1,
    padding: int | None = None,
    dilation: int = 1,
    backend: str = "unfold",
) -> torch.Tensor:
    """Involution of x (B, C, H, W) with per-pixel kernels weight (B, G, K, K, Ho, Wo).

    out[b, c, i, j] = sum over u, v of weight[b, c // (C // G), u, v, i, j]
                      * x[b, c, i*stride - padding + u*dilation, j*stride - padding + v*dilation]
    with zeros outside the image. padding defaults to dilation * (K - 1) // 2.
    """
    geom = check_involution_args(x, weight, stride, padding, dilation)
    return resolve_involution_backend(backend, x).apply(x, weight, geom)


class Involution(nn.Module):
    """Involution layer with the official kernel-generation branch.

    weight = span(relu(bn(reduce(pool(x))))), viewed as (B, G, K, K, Ho, Wo), where
    pool is an average pool of size and stride ``stride`` (identity at stride 1).

    Odd sizes at stride > 1: the official code pools to H // stride rows while the
    aggregation produces (H - 1) // stride + 1 rows (with the default padding), so
    it fails or reads out of bounds. Here the pool runs with ``ceil_mode=True``,
    which gives exactly the aggregation's output grid; its last, partial window
    averages the pixels it covers. For sizes the stride divides, the result is
    identical to the official layer.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 7,
        stride: int = 1,
        group_channels: int = 16,
        reduction_ratio: int = 4,
        backend: str = "unfold",
    ) -> None:
        super().__init__()
        for name, value in (
            ("channels", channels),
            ("kernel_size", kernel_size),
            ("stride", stride),
            ("group_channels", group_channels),
            ("reduction_ratio", reduction_ratio),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if channels % group_channels != 0:
            raise ValueError(
                f"channels={channels} is not divisible by group_channels={group_channels}"
            )
        if channels // reduction_ratio < 1:
            raise ValueError(f"reduction_ratio={reduction_ratio} leaves no channels of {channels}")
        default_registry().get(backend)  # unknown names fail here, not on first call
        self.channels = channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.groups = channels // group_channels
        self.backend = backend
        hidden = channels // reduction_ratio
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=False)
        self.bn = nn.BatchNorm2d(hidden)
        self.span = nn.Conv2d(hidden, kernel_size * kernel_size * self.groups, 1, bias=True)

    def generate(self, x: torch.Tensor) -> torch.Tensor:
        """The per-pixel kernels, shape (B, G, K, K, Ho, Wo)."""
        t = x
        if self.stride > 1:
            t = F.avg_pool2d(t, self.stride, self.stride, ceil_mode=True)
        t = self.span(F.relu(self.bn(self.reduce(t))))
        b, _, ho, wo = t.shape
        k = self.kernel_size
        return t.view(b, self.groups, k, k, ho, wo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"expected input (B, {self.channels}, H, W), got shape {tuple(x.shape)}"
            )
        weight = self.generate(x)
        return involution(x, weight, stride=self.stride, backend=self.backend)

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"groups={self.groups}, backend={self.backend!r}"
        )
