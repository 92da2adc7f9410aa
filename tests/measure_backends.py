"""Backends for the measurement tests: known durations and injected faults.

They live in an importable module (not a test file) because isolated workers
unpickle them by reference.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from invbench.backends.base import Backend, Closure, InvolutionBackend, Workload
from invbench.backends.unfold import unfold_involution
from invbench.core.spec import Case, Dtype, Geometry, Kind, Mode

TINY = Case(
    suite="test",
    name="tiny",
    geometry=Geometry(batch=1, channels=4, height=6, width=6, kernel_size=3, groups=2),
)


def spin_ms(ms: float) -> None:
    """Busy-wait on the wall clock until ms milliseconds have passed."""
    end = time.perf_counter_ns() + int(ms * 1e6)
    while time.perf_counter_ns() < end:
        pass


class _TestBackend(Backend):
    kind = Kind.BASELINE
    dtypes = frozenset({Dtype.FLOAT32})
    description = "test backend"

    def __init__(self, name: str) -> None:
        self.name = name  # type: ignore[misc]


class SpinBackend(_TestBackend):
    """Spins for `ms` per call; the first call also spins `first_call_ms` (a stand-in JIT)."""

    def __init__(self, name: str, ms: float, first_call_ms: float = 0.0) -> None:
        super().__init__(name)
        self.ms = ms
        self.first_call_ms = first_call_ms
        self.calls = 0
        self.durations_ms: list[float] = []  # each call's own wall time, taken inside it

    def build(self, work: Workload) -> Closure:
        out = work.x.detach()

        def fn() -> tuple[torch.Tensor, ...]:
            t0 = time.perf_counter_ns()
            spin_ms(self.ms + (self.first_call_ms if self.calls == 0 else 0.0))
            self.calls += 1
            self.durations_ms.append((time.perf_counter_ns() - t0) / 1e6)
            return (out,)

        return fn


@dataclass
class StreamClosure:
    """A closure that a fake timer reads durations from instead of timing it."""

    name: str
    draw: Callable[[], float]
    out: torch.Tensor
    drawn: list[float] = field(default_factory=list)

    def __call__(self) -> tuple[torch.Tensor, ...]:
        return (self.out,)


class StreamBackend(_TestBackend):
    """Its closure carries a generator of synthetic durations (ms) for a fake timer."""

    def __init__(self, name: str, draw: Callable[[], float]) -> None:
        super().__init__(name)
        self.draw = draw

    def build(self, work: Workload) -> Closure:
        return StreamClosure(self.name, self.draw, work.x.detach())


class FaultBackend(_TestBackend):
    """Builds fine, then fails its first call in the way `fault` names."""

    def __init__(self, name: str, fault: str) -> None:
        super().__init__(name)
        self.fault = fault

    def build(self, work: Workload) -> Closure:
        fault = self.fault

        def fn() -> tuple[torch.Tensor, ...]:
            if fault == "segfault":
                os.kill(os.getpid(), signal.SIGSEGV)
            elif fault == "abort":
                os.abort()
            elif fault == "hang":
                time.sleep(3600)
            elif fault == "oom":
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1024.00 GiB")
            elif fault == "cuda-error":
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            raise AssertionError(f"unknown fault {fault}")

        return fn


class AcceleratorError(RuntimeError):
    """Named as torch's error for a lost CUDA context: the harness goes by the type's name."""


class LostContextBackend(InvolutionBackend):
    """Computes involution (unfold) until `armed`, then raises a CUDA error on every call.

    `style` picks the error: "message" (a RuntimeError saying "CUDA error: ..."), or
    "type" (an AcceleratorError whose message does not say CUDA).
    """

    description = "loses the CUDA context"

    def __init__(self, name: str, style: str = "message", armed: bool = True) -> None:
        self.name = name  # type: ignore[misc]
        self.style = style
        self.armed = armed

    def apply(self, x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
        if self.armed:
            if self.style == "type":
                raise AcceleratorError("an illegal memory access was encountered")
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        k, s, p, d = geom.kernel_size, geom.stride, geom.pad, geom.dilation
        return unfold_involution(x, weight, k, s, p, d)


class CaseFaultBackend(SpinBackend):
    """Spins like SpinBackend, but on one kernel size and mode kills or hangs its process."""

    def __init__(self, name: str, fault: str, kernel_size: int, mode: Mode) -> None:
        super().__init__(name, ms=0.05)
        self.fault = fault
        self.kernel_size = kernel_size
        self.mode = mode

    def build(self, work: Workload) -> Closure:
        if work.geom.kernel_size != self.kernel_size or work.mode is not self.mode:
            return super().build(work)
        if self.fault == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.fault == "hang":
            time.sleep(3600)
        raise AssertionError(f"unknown fault {self.fault}")
