"""What `invbench profile` runs: the request, the resolved plan and the result records."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch

from invbench.backends.base import Backend, InvolutionBackend
from invbench.backends.registry import Registry
from invbench.core.spec import Case, DeviceKind, Dtype, Mode
from invbench.core.suites import Suite, find_suite
from invbench.profiling.memory_timeline import MemoryTimeline
from invbench.running.bench import UsageError, resolve_device
from invbench.running.levels.layer_workload import ConvLayer, LayerFuser

RANGE_PREFIX = "invbench/"
# NVTX ranges of a capture run (`--capture-only`); outermost, so Nsight filters can name them.
WARMUP_RANGE = "invbench-warmup"
CAPTURE_RANGE = "invbench-capture"
OUTSIDE_OPS = "(outside operators)"
OUTSIDE_PHASES = "(outside phases)"


@dataclass(frozen=True)
class ProfileRequest:
    suite: str
    case: str
    backends: Sequence[str]
    device: str = "auto"
    dtype: Dtype | None = None  # None: the suite's first dtype on this device
    mode: Mode = Mode.FWD
    batch: int | None = None  # None: the suite's batch on this device
    layer: bool = False
    warmup: int = 3
    iters: int = 5
    with_stack: bool = False


@dataclass(frozen=True)
class ProfilePlan:
    suite: Suite
    case: Case
    backends: tuple[Backend, ...]
    device: torch.device
    dtype: Dtype
    mode: Mode
    layer: bool
    warmup: int
    iters: int
    seed: int
    with_stack: bool = False

    @property
    def device_kind(self) -> DeviceKind:
        return DeviceKind(self.device.type)


@dataclass(frozen=True)
class KernelRow:
    """One kernel (GPU) or operator (CPU) of one backend's profiled iterations."""

    backend: str
    name: str
    calls: int
    total_us: float  # self device time (GPU) or self CPU time (CPU), all iterations
    mean_us: float  # per call
    per_iter_us: float
    share_pct: float  # of the case's time: GPU kernel time, or CPU wall time of the iterations
    launched_by: str = ""  # GPU: the operator that launched it most often


@dataclass(frozen=True)
class PhaseRow:
    """Time and memory of one phase of the full layer (--layer)."""

    backend: str
    phase: str
    calls: int
    total_us: float
    per_iter_us: float
    share_pct: float
    peak_bytes: int  # highest allocated level inside the phase, above the window's start
    allocated_bytes_per_iter: int  # bytes allocated inside the phase (frees not subtracted)


@dataclass
class BackendProfile:
    backend: str
    trace_path: Path
    memory_path: Path
    time_basis: str  # "self device time" or "self CPU time"
    per_iter_us: float  # GPU: kernel time per iteration; CPU: wall time per iteration
    kernels: list[KernelRow]
    timeline: MemoryTimeline
    phases: list[PhaseRow] = field(default_factory=list)
    snapshot_path: Path | None = None
    notes: list[str] = field(default_factory=list)


# -- planning -------------------------------------------------------------------


def find_case(suite: Suite, name: str) -> Case:
    for case in suite.cases:
        if case.name == name:
            return case
    known = ", ".join(c.name for c in suite.cases)
    raise UsageError(f"unknown case {name!r} in suite {suite.name!r} (known: {known})")


def plan_profile(request: ProfileRequest, registry: Registry) -> ProfilePlan:
    """Validate the request; every mistake is a UsageError with one line saying what to do."""
    try:
        suite = find_suite(request.suite)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not request.backends:
        raise UsageError("give at least one --backend (see `invbench list`)")
    backends = []
    for name in request.backends:
        if name not in registry:
            raise UsageError(f"unknown backend {name!r} (known: {', '.join(registry.names())})")
        backends.append(registry.get(name))
    if len({b.name for b in backends}) != len(backends):
        raise UsageError(f"a backend is named twice: {', '.join(request.backends)}")
    if request.batch is not None and request.batch < 1:
        raise UsageError(f"--batch must be >= 1, got {request.batch}")
    if request.iters < 1 or request.warmup < 0:
        raise UsageError("--iters must be >= 1 and --warmup >= 0")
    device = resolve_device(request.device)
    kind = DeviceKind(device.type)
    settings = suite.settings(kind)
    suite = suite.with_batch(request.batch or settings.batch)
    case = find_case(suite, request.case)
    dtype = request.dtype or settings.dtypes[0]
    for b in backends:
        reason = b.availability(kind, dtype)
        if reason is not None:
            raise UsageError(f"backend {b.name!r} cannot run here: {reason}")
        if request.layer and not (isinstance(b, InvolutionBackend) or whole_layer(b)):
            raise UsageError(f"--layer: {b.name!r} has no layer-level form")
        if request.layer and isinstance(b, LayerFuser) and request.mode is not Mode.FWD:
            raise UsageError(f"--layer: {b.name!r} is an inference kernel (--mode fwd)")
    if request.layer:
        g = case.geometry
        if g.dilation != 1 or g.pad != (g.kernel_size - 1) // 2:
            raise UsageError(
                f"--layer: case {case.name!r} has dilation {g.dilation} and padding {g.pad}; "
                "the layer supports dilation 1 with padding (K-1)//2"
            )
    return ProfilePlan(
        suite=suite,
        case=case,
        backends=tuple(backends),
        device=device,
        dtype=dtype,
        mode=request.mode,
        layer=request.layer,
        warmup=request.warmup,
        iters=request.iters,
        seed=settings.seed,
        with_stack=request.with_stack,
    )


def default_out_dir(plan: ProfilePlan) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    case = re.sub(r"[^A-Za-z0-9_.+-]", "_", plan.case.name)
    return Path("results") / "profile" / f"{plan.suite.name}-{case}-{stamp}"


# -- one iteration ----------------------------------------------------------------


def whole_layer(backend: Backend) -> bool:
    """A backend timed as one layer closure: a fused layer or the conv it replaces."""
    return not isinstance(backend, InvolutionBackend) and isinstance(
        backend, ConvLayer | LayerFuser
    )
