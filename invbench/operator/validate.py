"""Argument checks shared by every involution backend.

Every backend is called through :func:`invbench.involution`, which runs these
checks first, so a backend only ever sees arguments that describe a valid
operator. Each failure is a ValueError that names the value at fault.
"""

from __future__ import annotations

import torch

from invbench.core.spec import Geometry

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_involution_args(
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: int,
    padding: int | None,
    dilation: int,
) -> Geometry:
    """Validate the operator's arguments and return its geometry."""
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise ValueError("x and weight must be torch.Tensor")
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D (B, C, H, W), got shape {tuple(x.shape)}")
    if weight.dim() != 6:
        raise ValueError(
            f"weight must be 6-D (B, G, K, K, Ho, Wo), got shape {tuple(weight.shape)}"
        )
    stride = _positive_int("stride", stride)
    dilation = _positive_int("dilation", dilation)
    if padding is not None and (
        isinstance(padding, bool) or not isinstance(padding, int) or padding < 0
    ):
        raise ValueError(f"padding must be a non-negative int or None, got {padding!r}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"x dtype {x.dtype} is not a floating type")
    if weight.dtype != x.dtype:
        raise ValueError(f"weight dtype {weight.dtype} does not match x dtype {x.dtype}")
    if weight.device != x.device:
        raise ValueError(f"weight device {weight.device} does not match x device {x.device}")
    b, c, h, w = x.shape
    wb, g, k1, k2, _, _ = weight.shape
    if min(b, c, h, w) < 1:
        raise ValueError(f"x has an empty dimension: shape {tuple(x.shape)}")
    if k1 != k2 or k1 < 1:
        raise ValueError(f"weight kernel dims must be equal and positive, got {k1}x{k2}")
    if g < 1 or c % g != 0:
        raise ValueError(f"channels C={c} is not divisible by groups G={g}")
    if wb != b:
        raise ValueError(f"weight batch {wb} does not match x batch {b}")
    geom = Geometry(
        batch=b,
        channels=c,
        height=h,
        width=w,
        kernel_size=k1,
        stride=stride,
        dilation=dilation,
        groups=g,
        padding=padding,
    )
    span = dilation * (k1 - 1) + 1
    if h + 2 * geom.pad < span or w + 2 * geom.pad < span:
        raise ValueError(
            f"kernel_size={k1} with dilation={dilation} spans {span} pixels, larger than "
            f"the padded input {h + 2 * geom.pad}x{w + 2 * geom.pad}"
        )
    if tuple(weight.shape) != geom.weight_shape:
        raise ValueError(
            f"weight shape {tuple(weight.shape)} does not match the output grid: expected "
            f"{geom.weight_shape} for x {tuple(x.shape)}, stride={stride}, "
            f"padding={geom.pad}, dilation={dilation}"
        )
    return geom
