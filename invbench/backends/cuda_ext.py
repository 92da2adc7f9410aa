"""`cuda_ext` and `cuda_naive`: involution as C++/CUDA torch ops (invbench/csrc).

The extension defines three ops in the ``invbench_ext`` namespace:

    involution_fwd(x, weight, stride, padding, dilation, naive, poison) -> out
    involution_grad_input(grad_out, weight, H, W, stride, padding, dilation, naive, poison)
    involution_grad_weight(grad_out, x, G, K, stride, padding, dilation, naive, poison)

with CPU kernels always and CUDA kernels when torch has CUDA. Here they get fake
(meta) implementations, so torch.compile can trace them, and an autograd formula,
so they are differentiable in x and weight. ``naive`` selects the official-style
CUDA kernels (one thread per output element, no tiling); ``poison`` makes the op
NaN-fill its outputs before the kernel runs, so unwritten elements show in tests.

Availability checks only the toolchain (a compiler, ninja, nvcc for CUDA); the
build itself happens in build() or on the first apply(), and takes about a
minute the first time. A build failure becomes the backend's unavailability
reason and an ExtensionBuildError from apply().

On a CPU the kernels pick their vector path at run time; ``$INVBENCH_CPU_PATH``
(``avx512bf16-zmm`` ... ``generic``, or ``auto``) forces one for the whole process,
so two runs can compare paths. A path this CPU lacks, or an unknown name, is an
ExtensionBuildError from build() and apply(): the rows say why.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import torch

from invbench.backends import extension_build
from invbench.backends.base import (
    ALL_DEVICES,
    ALL_FLOATS,
    Closure,
    InvolutionBackend,
    Workload,
    poisoning_active,
)
from invbench.core.spec import DeviceKind, Dtype, Geometry

_OPS: dict[str, Any] = {}
_ops_lock = threading.Lock()
CPU_PATH_ENV = "INVBENCH_CPU_PATH"


def apply_cpu_path_request(ops: Any) -> None:
    """Force the CPU kernel path named by $INVBENCH_CPU_PATH, if it is set."""
    request = os.environ.get(CPU_PATH_ENV, "").strip()
    if not request:
        return
    try:
        ops.cpu_kernel_path(request, torch.float32)
    except RuntimeError as err:
        lines = str(err).strip().splitlines()
        reason = lines[0] if lines else type(err).__name__
        raise extension_build.ExtensionBuildError(f"{CPU_PATH_ENV}={request}: {reason}") from None


def _fwd_fake(
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: int,
    padding: int,
    dilation: int,
    naive: bool = False,
    poison: bool = False,
) -> torch.Tensor:
    return x.new_empty((x.shape[0], x.shape[1], weight.shape[4], weight.shape[5]))


def _grad_input_fake(
    grad_out: torch.Tensor,
    weight: torch.Tensor,
    height: int,
    width: int,
    stride: int,
    padding: int,
    dilation: int,
    naive: bool = False,
    poison: bool = False,
) -> torch.Tensor:
    return grad_out.new_empty((grad_out.shape[0], grad_out.shape[1], height, width))


def _grad_weight_fake(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    groups: int,
    kernel_size: int,
    stride: int,
    padding: int,
    dilation: int,
    naive: bool = False,
    poison: bool = False,
) -> torch.Tensor:
    b, _, ho, wo = grad_out.shape
    return x.new_empty((b, groups, kernel_size, kernel_size, ho, wo))


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    x, weight, stride, padding, dilation, naive, poison = inputs
    ctx.save_for_backward(x, weight)
    ctx.params = (stride, padding, dilation, naive, poison)


def _backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    x, weight = ctx.saved_tensors
    stride, padding, dilation, naive, poison = ctx.params
    ops = torch.ops.invbench_ext
    grad_x = grad_w = None
    if ctx.needs_input_grad[0]:
        grad_x = ops.involution_grad_input(
            grad_out, weight, x.shape[2], x.shape[3], stride, padding, dilation, naive, poison
        )
    if ctx.needs_input_grad[1]:
        grad_w = ops.involution_grad_weight(
            grad_out,
            x,
            weight.shape[1],
            weight.shape[2],
            stride,
            padding,
            dilation,
            naive,
            poison,
        )
    return grad_x, grad_w, None, None, None, None, None


def load_ops() -> Any:
    """Build/load the extension once per process and register its Python-side parts."""
    ops = _OPS.get("ops")
    if ops is not None:
        return ops
    with _ops_lock:
        if "ops" not in _OPS:
            if "path_error" in _OPS:
                raise extension_build.ExtensionBuildError(_OPS["path_error"])
            extension_build.load(extension_build.cuda_build_wanted())
            ns = extension_build.NAMESPACE
            torch.library.register_fake(f"{ns}::involution_fwd", _fwd_fake)
            torch.library.register_fake(f"{ns}::involution_grad_input", _grad_input_fake)
            torch.library.register_fake(f"{ns}::involution_grad_weight", _grad_weight_fake)
            torch.library.register_autograd(
                f"{ns}::involution_fwd", _backward, setup_context=_setup_context
            )
            try:
                apply_cpu_path_request(getattr(torch.ops, ns))
            except extension_build.ExtensionBuildError as err:
                _OPS["path_error"] = str(err)
                raise
            _OPS["ops"] = getattr(torch.ops, ns)
        return _OPS["ops"]


class CudaExtBackend(InvolutionBackend):
    name = "cuda_ext"
    description = (
        "C++/CUDA extension: tiled CUDA kernels (fp32/fp16/bf16, float accumulation, "
        "shared-memory halo) and a vectorised multi-threaded CPU path"
    )
    devices = ALL_DEVICES
    dtypes = ALL_FLOATS
    naive = False

    def availability(self, device: DeviceKind, dtype: Dtype | None = None) -> str | None:
        reason = super().availability(device, dtype)
        if reason is not None:
            return reason
        if device is DeviceKind.CUDA and not extension_build.cuda_build_wanted():
            return "torch has no CUDA support here: the CUDA kernels are not built"
        return extension_build.toolchain_problem(extension_build.cuda_build_wanted())

    def apply(self, x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
        ops = load_ops()
        out: torch.Tensor = ops.involution_fwd(
            x, weight, geom.stride, geom.pad, geom.dilation, self.naive, poisoning_active()
        )
        return out

    def build(self, work: Workload) -> Closure:
        load_ops()  # the build (first use only) stays out of the timed closure
        return super().build(work)

    def variant(self, device: DeviceKind, dtype: Dtype) -> str:
        """On a CPU: the vector path the kernels chose at run time (avx512bf16-zmm ... generic)."""
        if device is not DeviceKind.CPU or "ops" not in _OPS:
            return ""
        path: str = _OPS["ops"].cpu_kernel_path("", getattr(torch, dtype.value))
        return path


class CudaNaiveBackend(CudaExtBackend):
    name = "cuda_naive"
    description = (
        "official CUDA algorithm: one thread per output element, no tiling or shared "
        "memory (same extension, 64-bit offsets, all float types)"
    )
    devices = frozenset({DeviceKind.CUDA})
    naive = True
