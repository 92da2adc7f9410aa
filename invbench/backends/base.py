"""What every backend is: a name, a kind, what it supports, and a way to build a timed closure.

A backend never times anything itself. The runner hands it a :class:`Workload`
(random inputs already on the device) and gets back a zero-argument callable; the
timer calls that and nothing else.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from invbench.core import flops
from invbench.core.spec import DeviceKind, Dtype, Geometry, Kind, Level, Mode

ALL_DEVICES = frozenset({DeviceKind.CPU, DeviceKind.CUDA})
HALF_AND_SINGLE = frozenset({Dtype.FLOAT32, Dtype.FLOAT16, Dtype.BFLOAT16})
ALL_FLOATS = HALF_AND_SINGLE | {Dtype.FLOAT64}

Closure = Callable[[], Sequence[torch.Tensor]]


@dataclass
class Workload:
    """Random inputs of one case, shared by every backend timed on it."""

    geom: Geometry
    mode: Mode
    dtype: Dtype
    x: torch.Tensor  # (B, C, H, W); requires grad in fwd+bwd
    weight: torch.Tensor  # (B, G, K, K, Ho, Wo); requires grad in fwd+bwd
    grad_out: torch.Tensor  # (B, C, Ho, Wo)

    @property
    def device(self) -> torch.device:
        return self.x.device


class Backend(abc.ABC):
    """Base of every backend. Subclasses set the class attributes and implement build()."""

    name: ClassVar[str]
    kind: ClassVar[Kind]
    description: ClassVar[str]
    devices: ClassVar[frozenset[DeviceKind]] = ALL_DEVICES
    dtypes: ClassVar[frozenset[Dtype]] = HALF_AND_SINGLE
    levels: ClassVar[frozenset[Level]] = frozenset(Level)  # the suite levels it can run

    def availability(self, device: DeviceKind, dtype: Dtype | None = None) -> str | None:
        """None when the backend can run on this device and dtype, else the reason it cannot."""
        if device not in self.devices:
            return f"{self.name} does not run on {device.value}"
        if device is DeviceKind.CUDA and not torch.cuda.is_available():
            return "no CUDA device is available"
        if dtype is not None and dtype not in self.dtypes:
            return f"{self.name} does not support {dtype.value}"
        return None

    def timing_notes(self, device: DeviceKind) -> tuple[str, ...]:
        """Warnings every row this backend times on device carries (none by default)."""
        return ()

    @abc.abstractmethod
    def build(self, work: Workload) -> Closure:
        """Allocate, compile or load whatever is needed; return the closure to time.

        In fwd mode the closure returns (out,); in fwd+bwd it also runs the backward
        pass with work.grad_out and returns (out, grad_x, grad_weight).
        """

    def variant(self, device: DeviceKind, dtype: Dtype) -> str:
        """Which of its code paths the backend runs for this device and dtype ("": one path)."""
        return ""

    def cost(self, geom: Geometry, dtype: Dtype, mode: Mode) -> flops.Cost:
        """Analytic FLOPs and fewest bytes of what the closure computes."""
        return flops.involution_cost(geom, dtype.itemsize, mode)


class InvolutionBackend(Backend):
    """A backend that computes involution itself; it is checked against the reference."""

    kind: ClassVar[Kind] = Kind.INVOLUTION

    @abc.abstractmethod
    def apply(self, x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
        """The operator on validated arguments; differentiable in x and weight."""

    def build(self, work: Workload) -> Closure:
        geom, x, weight, grad_out = work.geom, work.x, work.weight, work.grad_out
        if work.mode is Mode.FWD:

            def fwd() -> tuple[torch.Tensor, ...]:
                with torch.no_grad():
                    return (self.apply(x, weight, geom),)

            return fwd

        def fwd_bwd() -> tuple[torch.Tensor, ...]:
            out = self.apply(x, weight, geom)
            gx, gw = torch.autograd.grad(out, (x, weight), grad_out)
            return (out.detach(), gx, gw)

        return fwd_bwd


_POISON = {"on": False}


@contextlib.contextmanager
def poisoned_outputs() -> Iterator[None]:
    """While active, new_output() fills its tensors with NaN so unwritten elements show."""
    previous = _POISON["on"]
    _POISON["on"] = True
    try:
        yield
    finally:
        _POISON["on"] = previous


def new_output(
    shape: Sequence[int], like: torch.Tensor, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Allocate a kernel's output; NaN-filled inside poisoned_outputs(), else uninitialised."""
    dt = like.dtype if dtype is None else dtype
    if _POISON["on"]:
        return torch.full(tuple(shape), float("nan"), dtype=dt, device=like.device)
    return torch.empty(tuple(shape), dtype=dt, device=like.device)


def poisoning_active() -> bool:
    """True inside poisoned_outputs(): for kernels that allocate their outputs themselves."""
    return _POISON["on"]
