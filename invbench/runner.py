"""The case x backend loop: check every backend, then time them interleaved, and record rows.

For each (case, dtype, mode) the runner builds one random workload, computes the
float64 reference once, then for every backend: builds its closure (first call
timed apart as compile_ms), checks its outputs against the reference with outputs
poisoned, measures its peak memory, estimates its duration and warms it up. The
backends that pass are then timed in interleaved rounds (A B C, C B A, ...) so that
drift and heat hit them alike, each until its stopping rule says so.

A backend that cannot run, fails, or runs out of memory becomes a row with a
status and a reason; it never stops the run.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from invbench import nvtx
from invbench.backends.base import Backend, Closure, Workload, poisoned_outputs
from invbench.backends.registry import Registry
from invbench.memory import measure_peak
from invbench.reference import involution_reference, relative_error
from invbench.results import ResultRow, ResultWriter
from invbench.spec import Case, DeviceKind, Dtype, Kind, Mode, Status
from invbench.stats import StopPolicy, StopReason, summarize, warmup_calls
from invbench.timing import CacheMode, Timer, make_timer

# Largest accepted max |err| / max |ref| against the float64 reference, by dtype.
TOLERANCE = {Dtype.FLOAT64: 1e-10, Dtype.FLOAT32: 1e-4, Dtype.FLOAT16: 1e-2, Dtype.BFLOAT16: 3e-2}
ROUND_MS = 10.0  # time each backend gets per interleaved round
PROBE_CALLS = 3


@dataclass(frozen=True)
class RunPlan:
    cases: tuple[Case, ...]
    backends: tuple[str, ...]
    dtypes: tuple[Dtype, ...]
    modes: tuple[Mode, ...]
    device: torch.device
    policy: StopPolicy = field(default_factory=StopPolicy)
    warmup_ms: float = 25.0
    seed: int = 0
    cache_mode: CacheMode = CacheMode.COLD

    @property
    def n_rows(self) -> int:
        return len(self.cases) * len(self.backends) * len(self.dtypes) * len(self.modes)


@dataclass
class _Arm:
    """One backend being timed in a group."""

    backend: Backend
    fn: Closure
    compile_ms: float
    max_rel_err: float | None
    peak_bytes: int | None
    mem_method: str
    estimate_ms: float = 0.0
    samples: list[float] = field(default_factory=list)
    stop: StopReason | None = None
    error: tuple[Status, str] | None = None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def make_workload(
    case: Case, dtype: Dtype, mode: Mode, device: torch.device, seed: int
) -> Workload:
    g = case.geometry
    gen = torch.Generator(device="cpu").manual_seed(seed)
    tdtype = getattr(torch, dtype.value)

    def rand(shape: tuple[int, ...], scale: float = 1.0) -> torch.Tensor:
        t = torch.randn(shape, generator=gen, dtype=torch.float32) * scale
        return t.to(device=device, dtype=tdtype)

    grad = mode is Mode.FWD_BWD
    x = rand(g.x_shape).requires_grad_(grad)
    weight = rand(g.weight_shape, 1.0 / g.kernel_size).requires_grad_(grad)
    return Workload(geom=g, mode=mode, dtype=dtype, x=x, weight=weight, grad_out=rand(g.out_shape))


def reference_outputs(work: Workload) -> tuple[torch.Tensor, ...]:
    x = work.x.detach().to(torch.float64).requires_grad_(work.mode is Mode.FWD_BWD)
    w = work.weight.detach().to(torch.float64).requires_grad_(work.mode is Mode.FWD_BWD)
    if work.mode is Mode.FWD:
        with torch.no_grad():
            return (involution_reference(x, w, work.geom),)
    out = involution_reference(x, w, work.geom)
    gx, gw = torch.autograd.grad(out, (x, w), work.grad_out.to(torch.float64))
    return (out.detach(), gx, gw)


def check_outputs(actual: Iterable[torch.Tensor], expected: Iterable[torch.Tensor]) -> float:
    """Largest relative error over the outputs (out, and grad_x, grad_weight in fwd+bwd)."""
    errs = [relative_error(a, e) for a, e in zip(actual, expected, strict=True)]
    return max(errs)


class Runner:
    def __init__(
        self,
        plan: RunPlan,
        registry: Registry,
        writer: ResultWriter,
        on_row: Callable[[ResultRow], None] | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self.plan = plan
        self.registry = registry
        self.writer = writer
        self.on_row = on_row or (lambda row: None)
        self.on_status = on_status or (lambda text: None)
        self.device_kind = DeviceKind(plan.device.type)
        self.timer: Timer = make_timer(plan.device, plan.cache_mode)

    # -- rows -----------------------------------------------------------------
    def _base(self, case: Case, backend: Backend, dtype: Dtype, mode: Mode) -> dict[str, Any]:
        g = case.geometry
        cost = backend.cost(g, dtype, mode)
        return dict(
            suite=case.suite,
            case=case.name,
            backend=backend.name,
            kind=backend.kind.value,
            device=self.device_kind.value,
            dtype=dtype.value,
            mode=mode.value,
            batch=g.batch,
            channels=g.channels,
            height=g.height,
            width=g.width,
            kernel_size=g.kernel_size,
            stride=g.stride,
            dilation=g.dilation,
            groups=g.groups,
            padding=g.pad,
            out_height=g.out_height,
            out_width=g.out_width,
            flops=cost.flops,
            bytes=cost.bytes,
        )

    def _emit(self, row: ResultRow, samples: list[float] | None = None) -> None:
        self.writer.add(row, samples or [])
        self.on_row(row)

    def _fail(self, base: dict[str, Any], status: Status, reason: str, **extra: Any) -> None:
        self._emit(ResultRow(**base, status=status.value, reason=reason, **extra))

    # -- the loop -------------------------------------------------------------
    def run(self) -> list[ResultRow]:
        plan = self.plan
        for case in plan.cases:
            for dtype in plan.dtypes:
                for mode in plan.modes:
                    with nvtx.range(f"{case.name} {dtype.value} {mode.value}"):
                        self._run_group(case, dtype, mode)
        return self.writer.rows

    def _run_group(self, case: Case, dtype: Dtype, mode: Mode) -> None:
        plan = self.plan
        label = f"{case.name} {dtype.value} {mode.value}"
        backends = [self.registry.get(name) for name in plan.backends]
        runnable = []
        for b in backends:
            reason = b.availability(self.device_kind, dtype)
            if reason is not None:
                self._fail(self._base(case, b, dtype, mode), Status.SKIPPED, reason)
            else:
                runnable.append(b)
        if not runnable:
            return
        self.on_status(f"{label}: preparing inputs")
        try:
            work = make_workload(case, dtype, mode, plan.device, plan.seed)
            expected: tuple[torch.Tensor, ...] | None = None
            if any(b.kind is Kind.INVOLUTION for b in runnable):
                self.on_status(f"{label}: float64 reference")
                expected = reference_outputs(work)
        except Exception as exc:
            status = Status.OOM if _is_oom(exc) else Status.ERROR
            for b in runnable:
                self._fail(self._base(case, b, dtype, mode), status, f"inputs: {_one_line(exc)}")
            self._release()
            return
        arms: list[tuple[_Arm, dict[str, Any]]] = []
        for b in runnable:
            base = self._base(case, b, dtype, mode)
            self.on_status(f"{label}: {b.name}: build, check, warm up")
            try:
                with nvtx.range(f"{b.name}/prepare"):
                    arm = self._prepare(b, work, expected, dtype)
            except Exception as exc:
                status = Status.OOM if _is_oom(exc) else Status.ERROR
                self._fail(base, status, _one_line(exc))
                self._release()
                continue
            if isinstance(arm, str):
                self._fail(base, Status.INCORRECT, arm)
                continue
            arms.append((arm, base))
        self.on_status(f"{label}: timing {len(arms)} backends")
        self._time_interleaved([a for a, _ in arms])
        for arm, base in arms:
            self._emit(self._row(arm, base), [] if arm.error else arm.samples)
        del work, expected, arms
        self._release()

    def _prepare(
        self,
        backend: Backend,
        work: Workload,
        expected: tuple[torch.Tensor, ...] | None,
        dtype: Dtype,
    ) -> _Arm | str:
        """Build, check, measure memory, estimate and warm up; a string is a failed check."""
        t0 = time.perf_counter()
        fn = backend.build(work)
        with poisoned_outputs():
            outputs = fn()
        self.timer.synchronize()
        compile_ms = (time.perf_counter() - t0) * 1e3
        err: float | None = None
        if backend.kind is Kind.INVOLUTION and expected is not None:
            err = check_outputs(outputs, expected)
            tol = TOLERANCE[dtype]
            if not err <= tol:
                return (
                    f"max relative error {err:.3g} vs the float64 reference exceeds "
                    f"{tol:g} for {dtype.value}"
                )
        del outputs
        try:
            peak = measure_peak(fn, self.plan.device)
            peak_bytes, mem_method = peak.bytes, peak.method
        except OSError as exc:
            peak_bytes, mem_method = None, f"unavailable: {_one_line(exc)}"
        with nvtx.range(f"{backend.name}/warmup"):
            probe = self.timer.sample(fn, PROBE_CALLS)
            estimate = sorted(probe)[len(probe) // 2]
            self.timer.sample(fn, warmup_calls(estimate, self.plan.warmup_ms))
        return _Arm(
            backend=backend,
            fn=fn,
            compile_ms=compile_ms,
            max_rel_err=err,
            peak_bytes=peak_bytes,
            mem_method=mem_method,
            estimate_ms=estimate,
        )

    def _time_interleaved(self, arms: list[_Arm]) -> None:
        policy = self.plan.policy
        active = list(arms)
        rnd = 0
        while active:
            order = active if rnd % 2 == 0 else active[::-1]
            for arm in order:
                n = max(1, min(100, math.ceil(ROUND_MS / max(arm.estimate_ms, 1e-3))))
                if policy.samples is not None:
                    n = min(n, policy.samples - len(arm.samples))
                try:
                    with nvtx.range(f"{arm.backend.name}/samples"):
                        arm.samples.extend(self.timer.sample(arm.fn, n))
                except Exception as exc:
                    arm.error = (
                        Status.OOM if _is_oom(exc) else Status.ERROR,
                        f"while timing: {_one_line(exc)}",
                    )
                    continue
                arm.stop = policy.decide(arm.samples)
            active = [a for a in active if a.stop is None and a.error is None]
            rnd += 1

    def _row(self, arm: _Arm, base: dict[str, Any]) -> ResultRow:
        common: dict[str, Any] = dict(
            compile_ms=arm.compile_ms,
            peak_mem_bytes=arm.peak_bytes,
            mem_method=arm.mem_method,
            max_rel_err=arm.max_rel_err,
            cache_mode=self.timer.cache_mode.value,
            timer=self.timer.method,
        )
        if arm.error is not None:
            return ResultRow(**base, status=arm.error[0].value, reason=arm.error[1], **common)
        s = summarize(arm.samples)
        median_s = s.median / 1e3
        return ResultRow(
            **base,
            status=Status.OK.value,
            n_samples=s.n,
            median_ms=s.median,
            p20_ms=s.p20,
            p80_ms=s.p80,
            min_ms=s.min,
            mean_ms=s.mean,
            ci_low_ms=s.ci_low,
            ci_high_ms=s.ci_high,
            stop_reason=arm.stop.value if arm.stop else "",
            **common,
            tflops=base["flops"] / median_s / 1e12,
            gbps=base["bytes"] / median_s / 1e9,
        )

    def _release(self) -> None:
        gc.collect()
        if self.plan.device.type == "cuda":
            torch.cuda.empty_cache()
