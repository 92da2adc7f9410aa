"""`triton`: hand-written Triton kernels for the forward pass, grad_x and grad_weight.

triton is imported lazily, on the first call of apply(): importing invbench or
listing backends never needs it. The kernels and their design notes live in
:mod:`invbench.backends.triton_kernels`.

Inputs that are not NCHW-contiguous (channels_last, transposed or sliced views)
are copied to contiguous tensors first; outputs are NCHW-contiguous. The
backend runs on CUDA, and on the CPU only through the Triton interpreter
(TRITON_INTERPRET=1, set before triton is imported).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, cast

import torch
from torch.autograd.function import once_differentiable

from invbench.backends.base import ALL_DEVICES, HALF_AND_SINGLE, InvolutionBackend
from invbench.core.spec import DeviceKind, Dtype, Geometry

NOT_INSTALLED = "triton is not installed (pip install invbench[triton])"
NO_CUDA = "no CUDA device (set TRITON_INTERPRET=1 before importing triton to run on the CPU)"
INTERPRETED = (
    "interpreted: TRITON_INTERPRET=1 times Triton's interpreter, not a compiled kernel; "
    "compare this row with nothing"
)
CPU_NEEDS_INTERPRETER = (
    "triton runs on the CPU only in its interpreter "
    "(set TRITON_INTERPRET=1 before importing triton)"
)


def triton_installed() -> bool:
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):
        return False


def interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


class _TritonInvolution(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, geom: Geometry
    ) -> torch.Tensor:
        from invbench.backends import triton_kernels as k

        x_c = x.detach().contiguous()
        w_c = weight.detach().contiguous()
        ctx.save_for_backward(x_c, w_c)
        ctx.geom = geom
        return k.involution_forward(x_c, w_c, geom)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        from invbench.backends import triton_kernels as k

        x_c, w_c = ctx.saved_tensors
        geom: Geometry = ctx.geom
        go = grad_out.contiguous()
        grad_x = k.involution_grad_x(go, w_c, geom) if ctx.needs_input_grad[0] else None
        grad_w = k.involution_grad_weight(go, x_c, geom) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None


class TritonBackend(InvolutionBackend):
    name = "triton"
    description = (
        "Triton kernels: tiled forward, gather grad_x and per-group grad_weight, "
        "no unfold tensor, float32 accumulation"
    )
    devices = ALL_DEVICES  # the CPU only under the Triton interpreter
    dtypes = HALF_AND_SINGLE

    def availability(self, device: DeviceKind, dtype: Dtype | None = None) -> str | None:
        if not triton_installed():
            return NOT_INSTALLED
        if device is DeviceKind.CPU and not interpreter_enabled():
            return CPU_NEEDS_INTERPRETER
        if device is DeviceKind.CUDA and not torch.cuda.is_available():
            return NO_CUDA
        if dtype is not None and dtype not in self.dtypes:
            return f"triton supports float32, float16 and bfloat16, not {dtype.value}"
        return super().availability(device, dtype)

    def timing_notes(self, device: DeviceKind) -> tuple[str, ...]:
        return (INTERPRETED,) if interpreter_enabled() else ()

    def apply(self, x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
        out = _TritonInvolution.apply(x, weight, geom)  # type: ignore[no-untyped-call]
        return cast(torch.Tensor, out)
