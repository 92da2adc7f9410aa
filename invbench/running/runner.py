"""The case x backend loop: check every backend, then time them interleaved, and record rows.

For each (case, dtype, mode) the runner builds one random workload, computes the
float64 reference once, then for every backend: builds its closure (first call
timed apart as compile_ms), checks its outputs against the reference with outputs
poisoned, measures its peak memory, estimates its duration and warms it up. The
backends that pass are then timed in interleaved rounds (A B C, C B A, ...) so that
drift and heat hit them alike, each until its stopping rule says so.

A backend that cannot run, fails, or runs out of memory becomes a row with a
status and a reason; it never stops the run. With plan.isolate each backend x
case runs in a worker process instead (invbench.running.isolate), so a crash or a hang
becomes a row too.

While a case runs, an NVML sampler (invbench.measure.telemetry) files clocks, power and
throttle reasons under the backend being timed; each row gets their summary and
its health warnings (invbench.measure.health).
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from invbench.backends.base import Backend, Workload, poisoned_outputs
from invbench.backends.registry import Registry
from invbench.core.choices import CacheMode
from invbench.core.spec import Case, DeviceKind, Dtype, Kind, Mode, Status
from invbench.core.stats import StopPolicy, StopReason, summarize, warmup_calls
from invbench.measure import nvtx
from invbench.measure.health import row_warnings
from invbench.measure.memory import measure_peak
from invbench.measure.telemetry import NvmlSampler, nvml_index
from invbench.measure.timing import Timer, capture_graph, graph_calls, make_timer
from invbench.operator.reference import involution_reference, relative_error
from invbench.storage.results import KEY_COLUMNS, ResultRow

# Largest accepted max |err| / max |ref| against the float64 reference, by dtype.
TOLERANCE = {Dtype.FLOAT64: 1e-10, Dtype.FLOAT32: 1e-4, Dtype.FLOAT16: 1e-2, Dtype.BFLOAT16: 3e-2}
ROUND_MS = 10.0  # time each backend gets per interleaved round
ROUND_MAX_SAMPLES = 100
PROBE_CALLS = 3
HIDE_LAUNCH_BELOW_MS = 0.02  # GPU kernels shorter than this are enqueued behind a sleep
WARMUP_BATCH = 200  # warm-up calls per batch when launches are hidden


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
    isolate: bool = False  # each backend x case in a worker process (invbench.running.isolate)
    timeout_s: float = 600.0  # per worker, with isolate

    @property
    def n_rows(self) -> int:
        return len(self.cases) * len(self.backends) * len(self.dtypes) * len(self.modes)


@dataclass
class _Arm:
    """One backend being timed in a group."""

    backend: Backend
    fn: Callable[[], object]  # what the timer calls: the closure, or a graph's replay
    compile_ms: float
    max_rel_err: float | None
    peak_bytes: int | None
    mem_method: str
    estimate_ms: float = 0.0  # one call
    calls: int = 1  # calls per timed fn() (graph replay)
    cache_mode: CacheMode = CacheMode.HOT
    hide_launch: bool = False
    exposed_batches: int = 0  # hide_launch batches whose enqueue outlasted the sleep
    batches: int = 0
    elapsed_s: float = 0.0  # wall time spent sampling
    samples: list[float] = field(default_factory=list)
    stop: StopReason | None = None
    error: tuple[Status, str] | None = None
    notes: list[str] = field(default_factory=list)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def classify(exc: BaseException) -> Status:
    """oom for out-of-memory, crashed for a CUDA error (the context is lost), else error."""
    if _is_oom(exc):
        return Status.OOM
    if type(exc).__name__ == "AcceleratorError" or "CUDA error" in str(exc):
        return Status.CRASHED
    return Status.ERROR


class RowSink(Protocol):
    """Where rows go: a ResultWriter, or a worker's in-memory list."""

    rows: list[ResultRow]

    def add(self, row: ResultRow, samples_ms: Sequence[float] = ()) -> None: ...


def default_sampler(device: torch.device, ignore_pids: Iterable[int] = ()) -> NvmlSampler:
    if device.type != "cuda":
        return NvmlSampler.unavailable(f"not a CUDA run (device {device})")
    return NvmlSampler(nvml_index(device), ignore_pids=ignore_pids)


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
        writer: RowSink,
        on_row: Callable[[ResultRow], None] | None = None,
        on_status: Callable[[str], None] | None = None,
        *,
        timer: Timer | None = None,
        sampler: NvmlSampler | None = None,
        copy_gbps: float | None = None,
        skip: Iterable[tuple[Any, ...]] = (),
        wall_clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.plan = plan
        self.registry = registry
        self.writer = writer
        self.on_row = on_row or (lambda row: None)
        self.on_status = on_status or (lambda text: None)
        self.device_kind = DeviceKind(plan.device.type)
        self.timer: Timer = timer or make_timer(plan.device, plan.cache_mode)
        self.sampler = sampler or default_sampler(plan.device)
        self.copy_gbps = copy_gbps
        self.skip = set(skip)  # row keys already measured (resume)
        self.wall_clock = wall_clock
        self._other_processes: int | None = None

    # -- rows -----------------------------------------------------------------
    def base(self, case: Case, backend: Backend, dtype: Dtype, mode: Mode) -> dict[str, Any]:
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
            **g.row_fields(),
            flops=cost.flops,
            bytes=cost.bytes,
        )

    @staticmethod
    def key(base: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(base[k] for k in KEY_COLUMNS)

    def emit(self, row: ResultRow, samples: list[float] | None = None) -> None:
        self.writer.add(row, samples or [])
        self.on_row(row)

    def fail(self, base: dict[str, Any], status: Status, reason: str, **extra: Any) -> None:
        tele = self.sampler.take(base["backend"])
        self.emit(
            ResultRow(**base, status=status.value, reason=reason, telemetry=tele.source, **extra)
        )

    # -- the loop -------------------------------------------------------------
    def groups(self) -> Iterable[tuple[Case, Dtype, Mode]]:
        for case in self.plan.cases:
            for dtype in self.plan.dtypes:
                for mode in self.plan.modes:
                    yield case, dtype, mode

    def pending(self, case: Case, dtype: Dtype, mode: Mode) -> list[Backend]:
        """The group's backends whose rows are not yet in the result directory."""
        backends = [self.registry.get(name) for name in self.plan.backends]
        return [b for b in backends if self.key(self.base(case, b, dtype, mode)) not in self.skip]

    def run(self) -> list[ResultRow]:
        if self.plan.isolate:
            from invbench.running.isolate import run_isolated

            run_isolated(self)
            return self.writer.rows
        self.sampler.start()
        try:
            for case, dtype, mode in self.groups():
                with nvtx.range(f"{case.name} {dtype.value} {mode.value}"):
                    self.run_group(case, dtype, mode, self.pending(case, dtype, mode))
        finally:
            self.sampler.stop()
        return self.writer.rows

    def run_group(self, case: Case, dtype: Dtype, mode: Mode, backends: list[Backend]) -> None:
        if not backends:
            return
        plan = self.plan
        label = f"{case.name} {dtype.value} {mode.value}"
        runnable = []
        for b in backends:
            reason = b.availability(self.device_kind, dtype)
            if reason is not None:
                self.fail(self.base(case, b, dtype, mode), Status.SKIPPED, reason)
            else:
                runnable.append(b)
        if not runnable:
            return
        self._other_processes = self.sampler.other_processes()
        self.on_status(f"{label}: preparing inputs")
        try:
            work = make_workload(case, dtype, mode, plan.device, plan.seed)
            expected: tuple[torch.Tensor, ...] | None = None
            if any(b.kind is Kind.INVOLUTION for b in runnable):
                self.on_status(f"{label}: float64 reference")
                expected = reference_outputs(work)
        except Exception as exc:
            for b in runnable:
                base = self.base(case, b, dtype, mode)
                self.fail(base, classify(exc), f"inputs: {_one_line(exc)}")
            self._release()
            return
        arms: list[tuple[_Arm, dict[str, Any]]] = []
        for b in runnable:
            base = self.base(case, b, dtype, mode)
            self.on_status(f"{label}: {b.name}: build, check, warm up")
            try:
                with nvtx.range(f"{b.name}/prepare"), self.sampler.window(b.name, timing=False):
                    arm = self._prepare(b, work, expected, dtype)
            except Exception as exc:
                self.fail(base, classify(exc), _one_line(exc))
                self._release()
                continue
            if isinstance(arm, str):
                self.fail(base, Status.INCORRECT, arm)
                continue
            arms.append((arm, base))
        self.on_status(f"{label}: timing {len(arms)} backends")
        self._time_interleaved([a for a, _ in arms])
        for arm, base in arms:
            self.emit(self._row(arm, base), [] if arm.error else arm.samples)
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
        probe = self.timer.sample(fn, PROBE_CALLS)
        estimate = sorted(probe)[len(probe) // 2]
        arm = _Arm(
            backend=backend,
            fn=fn,
            compile_ms=compile_ms,
            max_rel_err=err,
            peak_bytes=peak_bytes,
            mem_method=mem_method,
            estimate_ms=estimate,
            cache_mode=self.timer.cache_mode,
            notes=list(backend.timing_notes(self.device_kind)),
        )
        gpu = self.plan.device.type == "cuda"
        if gpu and self.timer.cache_mode is CacheMode.GRAPH:
            calls = graph_calls(estimate)
            try:
                arm.fn = capture_graph(fn, calls, self.plan.device)
                arm.calls = calls
            except Exception as exc:
                arm.cache_mode = CacheMode.HOT
                arm.notes.append(f"graph capture failed, measured hot: {_one_line(exc)}")
                self.timer.synchronize()
        elif not gpu:
            arm.cache_mode = CacheMode.HOT  # no cache flush or graphs on the CPU
        arm.hide_launch = gpu and estimate * arm.calls < HIDE_LAUNCH_BELOW_MS
        total = math.ceil(warmup_calls(estimate, self.plan.warmup_ms) / arm.calls)
        with nvtx.range(f"{backend.name}/warmup"):
            while total > 0:
                n = min(total, WARMUP_BATCH) if arm.hide_launch else total
                self.timer.sample(arm.fn, n, hide_launch=arm.hide_launch)
                total -= n
        return arm

    def _time_interleaved(self, arms: list[_Arm]) -> None:
        policy = self.plan.policy
        active = list(arms)
        rnd = 0
        while active:
            order = active if rnd % 2 == 0 else active[::-1]
            for arm in order:
                per_sample = max(arm.estimate_ms * arm.calls, 1e-3)
                n = max(1, min(ROUND_MAX_SAMPLES, math.ceil(ROUND_MS / per_sample)))
                if policy.samples is not None:
                    n = min(n, policy.samples - len(arm.samples))
                t0 = self.wall_clock()
                try:
                    with (
                        nvtx.range(f"{arm.backend.name}/samples"),
                        self.sampler.window(arm.backend.name, timing=True),
                    ):
                        batch = self.timer.sample(arm.fn, n, hide_launch=arm.hide_launch)
                except Exception as exc:
                    arm.error = (classify(exc), f"while timing: {_one_line(exc)}")
                    continue
                arm.elapsed_s += self.wall_clock() - t0
                arm.batches += 1
                if arm.hide_launch and not self.timer.last_hidden:
                    arm.exposed_batches += 1
                arm.samples.extend(ms / arm.calls for ms in batch)
                arm.stop = policy.decide(arm.samples, arm.elapsed_s)
            active = [a for a in active if a.stop is None and a.error is None]
            rnd += 1

    def _row(self, arm: _Arm, base: dict[str, Any]) -> ResultRow:
        tele = self.sampler.take(arm.backend.name)
        notes = list(arm.notes)
        if arm.hide_launch and arm.exposed_batches:
            notes.append(
                f"launch latency not hidden in {arm.exposed_batches} of {arm.batches} batches"
            )
        launch_hidden = arm.hide_launch and arm.batches > 0 and arm.exposed_batches == 0
        common: dict[str, Any] = dict(
            compile_ms=arm.compile_ms,
            peak_mem_bytes=arm.peak_bytes,
            mem_method=arm.mem_method,
            max_rel_err=arm.max_rel_err,
            cache_mode=arm.cache_mode.value,
            timer=self.timer.method,
            launch_hidden=launch_hidden,
            calls_per_sample=arm.calls,
            variant=arm.backend.variant(DeviceKind(base["device"]), Dtype(base["dtype"])),
            **tele.row_fields(),
        )
        if arm.error is not None:
            return ResultRow(
                **base,
                status=arm.error[0].value,
                reason=arm.error[1],
                warnings="; ".join(notes),
                **common,
            )
        s = summarize(arm.samples)
        median_s = s.median / 1e3
        gbps = base["bytes"] / median_s / 1e9
        policy = self.plan.policy
        warnings = row_warnings(
            s,
            tele,
            self.sampler.max_sm_clock_mhz,
            self._other_processes,
            notes,
            target_rel_ci=policy.target_rel_ci if policy.samples is None else None,
        )
        return ResultRow(
            **base,
            status=Status.OK.value,
            **s.row_fields(),
            stop_reason=arm.stop.value if arm.stop else "",
            **common,
            tflops=base["flops"] / median_s / 1e12,
            gbps=gbps,
            roofline_frac=gbps / self.copy_gbps if self.copy_gbps else None,
            warnings="; ".join(warnings),
        )

    def _release(self) -> None:
        gc.collect()
        if self.plan.device.type == "cuda":
            torch.cuda.empty_cache()
