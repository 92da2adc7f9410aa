"""`triton_fused`: the whole involution layer for inference in one Triton kernel.

Layer and model levels only (it replaces the layer, not the operator), forward
(eval mode) only. The kernel is in :mod:`invbench.backends.triton_fused_kernel`;
triton is imported only when a layer is fused.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import torch

from invbench.backends.base import ALL_DEVICES, HALF_AND_SINGLE, Backend, Closure, Workload
from invbench.core.spec import DeviceKind, Dtype, Kind, Level

if TYPE_CHECKING:
    from invbench.operator.ops import Involution


def interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


class TritonFusedBackend(Backend):
    name = "triton_fused"
    kind = Kind.INVOLUTION
    description = (
        "fused inference layer (Triton): BN-folded reduce, ReLU, span and aggregation in one "
        "kernel; the generated weight never goes to memory"
    )
    devices = ALL_DEVICES
    dtypes = HALF_AND_SINGLE
    levels: ClassVar[frozenset[Level]] = frozenset({Level.LAYER, Level.MODEL})

    def availability(self, device: DeviceKind, dtype: Dtype | None = None) -> str | None:
        if importlib.util.find_spec("triton") is None:
            return "triton is not installed (pip install triton)"
        if device is DeviceKind.CPU and not interpreter_on():
            return "runs on CUDA; on the CPU only under the Triton interpreter (TRITON_INTERPRET=1)"
        return super().availability(device, dtype)

    def timing_notes(self, device: DeviceKind) -> tuple[str, ...]:
        from invbench.backends.triton_backend import INTERPRETED

        return (INTERPRETED,) if interpreter_on() else ()

    def build(self, work: Workload) -> Closure:
        raise ValueError(f"{self.name} runs at the layer and model levels only")

    def fuse(self, layer: Involution) -> Callable[[torch.Tensor], torch.Tensor]:
        """The eval-mode layer (BN on running statistics) as one fused kernel call."""
        from invbench.backends.triton_fused_kernel import FusedInvolution

        if layer.training:
            raise ValueError(f"{self.name} fuses layers in eval mode only (call .eval())")
        return FusedInvolution(layer)
