"""`invbench profile` as a library call: one case, one or more backends, under torch.profiler.

For each backend the case's closure is built exactly as the runner builds it
(same workload, same seed), warmed up, then run for a few iterations under
torch.profiler. Each backend leaves in the output folder:

- ``trace-BACKEND.json``: the Chrome trace (opens in Perfetto or chrome://tracing);
- its rows in ``kernels.csv``: per kernel (GPU) or operator (CPU) the calls, total
  and mean self time and share of the case;
- ``memory-BACKEND.csv``: bytes allocated over time, with the peak and what held it
  in ``profile.json``;
- with ``--layer``, its rows in ``phases.csv``: time and memory of kernel generation
  and aggregation (and the backward pass in fwd+bwd).

Every phase is also an NVTX range, so Nsight captures of the same run are labelled.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function, schedule

from invbench.backends.base import Backend, InvolutionBackend
from invbench.backends.registry import Registry
from invbench.core.spec import Case, DeviceKind, Dtype, Mode
from invbench.core.suites import Suite, find_suite
from invbench.measure import nvtx
from invbench.profiling.memory_timeline import MemoryTimeline, memory_timeline
from invbench.running.bench import UsageError, resolve_device
from invbench.running.layer_level import ConvLayer, LayerFuser, build_layer_closures, make_layer
from invbench.running.runner import make_workload

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


@contextmanager
def phase(name: str) -> Iterator[None]:
    """A range seen by both torch.profiler (record_function) and Nsight (NVTX)."""
    with nvtx.range(name), record_function(name):
        yield


def iter_range(backend: str) -> str:
    return f"{RANGE_PREFIX}{backend}/iter"


def phase_range(backend: str, name: str) -> str:
    return f"{RANGE_PREFIX}{backend}/{name}"


def build_step(plan: ProfilePlan, backend: Backend) -> Callable[[], None]:
    """One iteration of the case as a zero-argument callable that keeps nothing alive."""
    if plan.layer:
        return _layer_step(plan, backend)
    work = make_workload(plan.case, plan.dtype, plan.mode, plan.device, plan.seed)
    fn = backend.build(work)

    def step() -> None:
        outputs = fn()
        del outputs

    return step


def whole_layer(backend: Backend) -> bool:
    """A backend timed as one layer closure: a fused layer or the conv it replaces."""
    return not isinstance(backend, InvolutionBackend) and isinstance(
        backend, ConvLayer | LayerFuser
    )


def _whole_layer_step(plan: ProfilePlan, backend: Backend) -> Callable[[], None]:
    g = plan.case.geometry
    tdtype = getattr(torch, plan.dtype.value)
    gen = torch.Generator(device="cpu").manual_seed(plan.seed)
    x = torch.randn(g.x_shape, generator=gen).to(device=plan.device, dtype=tdtype)
    grad_out = torch.randn(g.out_shape, generator=gen).to(device=plan.device, dtype=tdtype)
    source = None if isinstance(backend, ConvLayer) else make_layer(g, plan.seed)
    closures = build_layer_closures(backend, g, source, x, grad_out, plan.mode, plan.seed)
    layer_name = phase_range(backend.name, "layer")

    def step() -> None:
        with phase(layer_name):
            out = closures.total()
        del out

    return step


def _layer_step(plan: ProfilePlan, backend: Backend) -> Callable[[], None]:
    from invbench.operator.ops import Involution, involution

    if whole_layer(backend):
        return _whole_layer_step(plan, backend)
    g = plan.case.geometry
    tdtype = getattr(torch, plan.dtype.value)
    layer = Involution(
        g.channels,
        kernel_size=g.kernel_size,
        stride=g.stride,
        group_channels=g.group_channels,
        backend=backend.name,
    ).to(device=plan.device, dtype=tdtype)
    gen = torch.Generator(device="cpu").manual_seed(plan.seed)
    x = torch.randn(g.x_shape, generator=gen).to(device=plan.device, dtype=tdtype)
    gen_name = phase_range(backend.name, "generate")
    agg_name = phase_range(backend.name, "aggregate")
    if plan.mode is Mode.FWD:
        layer.eval()

        def fwd() -> None:
            with torch.no_grad():
                with phase(gen_name):
                    weight = layer.generate(x)
                with phase(agg_name):
                    out = involution(x, weight, stride=layer.stride, backend=backend.name)
            del weight, out

        return fwd
    layer.train()
    x.requires_grad_(True)
    inputs = (x, *layer.parameters())
    grad_out = torch.randn(g.out_shape, generator=gen).to(device=plan.device, dtype=tdtype)
    bwd_name = phase_range(backend.name, "backward")

    def fwd_bwd() -> None:
        with phase(gen_name):
            weight = layer.generate(x)
        with phase(agg_name):
            out = involution(x, weight, stride=layer.stride, backend=backend.name)
        with phase(bwd_name):
            grads = torch.autograd.grad(out, inputs, grad_out)
        del weight, out, grads

    return fwd_bwd


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- profiling --------------------------------------------------------------------


def profile_backend(plan: ProfilePlan, backend: Backend, out_dir: Path) -> BackendProfile:
    """Warm up, then profile plan.iters iterations of one backend; write its files."""
    name = backend.name
    step = build_step(plan, backend)
    with phase(phase_range(name, "warmup")):
        for _ in range(plan.warmup):
            step()
        synchronize(plan.device)
    trace_path = out_dir / f"trace-{_slug(name)}.json"
    got: dict[str, Any] = {}

    def ready(prof: profile) -> None:
        prof.export_chrome_trace(str(trace_path))
        got["events"] = prof.events()

    activities = [ProfilerActivity.CPU]
    if plan.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    # One profiled iteration first warms the profiler itself up; it is not recorded.
    with profile(
        activities=activities,
        record_shapes=True,
        profile_memory=True,
        with_stack=plan.with_stack,
        schedule=schedule(wait=0, warmup=1, active=plan.iters, repeat=1),
        on_trace_ready=ready,
    ) as prof:
        for _ in range(plan.iters + 1):
            with phase(iter_range(name)):
                step()
            synchronize(plan.device)
            prof.step()
    if "events" not in got:
        raise RuntimeError("torch.profiler recorded nothing (its schedule never completed)")
    events = got["events"]
    trace = json.loads(trace_path.read_text())
    timeline = memory_timeline(trace, plan.device.type, RANGE_PREFIX)
    memory_path = out_dir / f"memory-{_slug(name)}.csv"
    timeline.write_csv(memory_path)
    if plan.device.type == "cuda":
        kernels, per_iter = device_kernel_table(events, name, plan.iters)
        basis = "self device time"
    else:
        kernels, per_iter = cpu_op_table(events, name, plan.iters)
        basis = "self CPU time"
    result = BackendProfile(
        backend=name,
        trace_path=trace_path,
        memory_path=memory_path,
        time_basis=basis,
        per_iter_us=per_iter,
        kernels=kernels,
        timeline=timeline,
    )
    if plan.layer:
        result.phases = phase_table(events, trace, timeline, plan, name, whole=whole_layer(backend))
    if plan.device.type == "cuda":
        _memory_snapshot(
            step, plan.device, out_dir / f"memory-snapshot-{_slug(name)}.pickle", result
        )
    return result


def capture(plan: ProfilePlan, backend: Backend) -> None:
    """Run the case for an Nsight capture: warm-up, then the captured iterations; no profiler."""
    step = build_step(plan, backend)
    with nvtx.range(WARMUP_RANGE):
        for _ in range(plan.warmup):
            with nvtx.range(iter_range(backend.name)):
                step()
        synchronize(plan.device)
    with nvtx.range(CAPTURE_RANGE):
        for _ in range(plan.iters):
            with nvtx.range(iter_range(backend.name)):
                step()
        synchronize(plan.device)


def _memory_snapshot(
    step: Callable[[], None], device: torch.device, path: Path, result: BackendProfile
) -> None:
    """One more iteration with the CUDA caching allocator's history on (pytorch.org/memory_viz)."""
    mem: Any = torch.cuda.memory
    try:
        mem._record_memory_history(max_entries=100_000)
        try:
            step()
            synchronize(device)
            mem._dump_snapshot(str(path))
        finally:
            mem._record_memory_history(enabled=None)
        result.snapshot_path = path
    except Exception as exc:  # the snapshot is a bonus; the profile stands without it
        result.notes.append(f"memory snapshot unavailable: {type(exc).__name__}: {exc}")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


# -- tables from the profiler's events ---------------------------------------------


def _is_annotation(ev: Any) -> bool:
    name = str(ev.name)
    return (
        bool(getattr(ev, "is_user_annotation", False))
        or name.startswith(RANGE_PREFIX)
        or name.startswith("ProfilerStep")
    )


def _is_device(ev: Any) -> bool:
    return str(getattr(ev.device_type, "name", ev.device_type)) != "CPU"


def _under(ev: Any, range_name: str) -> bool:
    parent = ev.cpu_parent
    while parent is not None:
        if parent.name == range_name:
            return True
        parent = parent.cpu_parent
    return False


def cpu_op_table(events: Sequence[Any], backend: str, iters: int) -> tuple[list[KernelRow], float]:
    """Operators by self CPU time inside the iterations; shares of the iterations' wall time.

    The time no operator accounts for (Python, argument checks, the ranges themselves)
    is its own row, so the shares add up to the iterations' wall time.
    """
    name = iter_range(backend)
    wall = sum(float(e.cpu_time_total) for e in events if e.name == name and not _is_device(e))
    calls: Counter[str] = Counter()
    totals: defaultdict[str, float] = defaultdict(float)
    for e in events:
        if _is_device(e) or _is_annotation(e) or str(e.name).startswith("["):
            continue
        if not _under(e, name):
            continue
        calls[e.name] += 1
        totals[e.name] += float(e.self_cpu_time_total)
    rows = [
        KernelRow(
            backend=backend,
            name=op,
            calls=calls[op],
            total_us=totals[op],
            mean_us=totals[op] / calls[op],
            per_iter_us=totals[op] / iters,
            share_pct=100.0 * totals[op] / wall if wall else 0.0,
        )
        for op in totals
    ]
    outside = wall - sum(totals.values())
    rows.append(
        KernelRow(
            backend=backend,
            name=OUTSIDE_OPS,
            calls=iters,
            total_us=outside,
            mean_us=outside / iters,
            per_iter_us=outside / iters,
            share_pct=100.0 * outside / wall if wall else 0.0,
        )
    )
    rows.sort(key=lambda r: -r.total_us)
    return rows, wall / iters


def device_kernel_table(
    events: Sequence[Any], backend: str, iters: int
) -> tuple[list[KernelRow], float]:
    """GPU kernels (and copies, memsets) by device time; shares of the total device time."""
    launched: dict[str, Counter[str]] = {}
    for e in events:
        if _is_device(e):
            continue
        for k in getattr(e, "kernels", []) or []:
            launched.setdefault(str(k.name), Counter())[str(e.name)] += 1
    calls: Counter[str] = Counter()
    totals: defaultdict[str, float] = defaultdict(float)
    for e in events:
        if not _is_device(e) or _is_annotation(e):
            continue
        calls[e.name] += 1
        totals[e.name] += float(e.device_time_total)
    busy = sum(totals.values())
    rows = [
        KernelRow(
            backend=backend,
            name=k,
            calls=calls[k],
            total_us=totals[k],
            mean_us=totals[k] / calls[k],
            per_iter_us=totals[k] / iters,
            share_pct=100.0 * totals[k] / busy if busy else 0.0,
            launched_by=launched[k].most_common(1)[0][0] if k in launched else "",
        )
        for k in totals
    ]
    rows.sort(key=lambda r: -r.total_us)
    return rows, busy / iters


def _windows(trace: dict[str, Any], name: str, origin: float) -> list[tuple[float, float]]:
    """The (start, end) of every range called name, in the timeline's time base."""
    spans = []
    for ev in trace.get("traceEvents", []):
        if ev.get("ph") == "X" and ev.get("cat") == "user_annotation" and ev.get("name") == name:
            ts = float(ev["ts"]) - origin
            spans.append((ts, ts + float(ev.get("dur", 0.0))))
    return spans


def _kernel_time_in(events: Sequence[Any], windows: list[tuple[float, float]]) -> float:
    """Device time of the kernels whose launching operator started inside a window."""
    total = 0.0
    for e in events:
        kernels = getattr(e, "kernels", None)
        if _is_device(e) or not kernels:
            continue
        start = e.time_range.start
        if any(lo <= start <= hi for lo, hi in windows):
            total += sum(float(k.duration) for k in kernels)
    return total


def phase_table(
    events: Sequence[Any],
    trace: dict[str, Any],
    timeline: MemoryTimeline,
    plan: ProfilePlan,
    backend: str,
    whole: bool = False,
) -> list[PhaseRow]:
    """Generation, aggregation (and backward): time from the profiler, memory from the timeline.

    ``whole``: the backend runs the layer as one closure (fused, or the conv baseline):
    one phase, ``layer``, holding its forward (and backward, if any).
    """
    gpu = plan.device.type == "cuda"

    def t(evs: list[Any]) -> float:
        # CPU: wall time of the ranges. GPU: the kernels launched inside them, from any
        # thread (the autograd engine launches the backward's kernels from its own).
        if not gpu:
            return sum(float(e.cpu_time_total) for e in evs)
        windows = [(e.time_range.start, e.time_range.end) for e in evs]
        return _kernel_time_in(events, windows)

    iteration = t([e for e in events if e.name == iter_range(backend) and not _is_device(e)])
    rows: list[PhaseRow] = []

    def add(phase: str, calls: int, total: float, peak: int, allocated: int) -> None:
        rows.append(
            PhaseRow(
                backend=backend,
                phase=phase,
                calls=calls,
                total_us=total,
                per_iter_us=total / plan.iters,
                share_pct=100.0 * total / iteration if iteration else 0.0,
                peak_bytes=peak,
                allocated_bytes_per_iter=allocated // plan.iters,
            )
        )

    forward = ["layer"] if whole else ["generate", "aggregate"]
    names = forward + (["backward"] if plan.mode is Mode.FWD_BWD and not whole else [])
    totals: dict[str, float] = {}
    for short in names:
        full = phase_range(backend, short)
        evs = [e for e in events if e.name == full and not _is_device(e)]
        totals[short] = t(evs)
        windows = _windows(trace, full, timeline.origin_us)
        if short != "backward":
            add(
                short,
                len(evs),
                totals[short],
                timeline.peak_in(windows),
                timeline.allocated_in(windows),
            )
            continue
        # Split the backward pass by the forward phase whose operators made each autograd
        # node: the engine's evaluate_function ranges carry the forward op's sequence number.
        split = 0.0
        split_alloc = 0
        for fwd in forward:
            seqs = _sequence_numbers(events, phase_range(backend, fwd))
            nodes = [
                e
                for e in events
                if not _is_device(e)
                and str(e.name).startswith(_EVALUATE)
                and int(e.sequence_nr) in seqs
            ]
            node_windows = _node_windows(trace, seqs, timeline.origin_us)
            total = t(nodes)
            allocated = timeline.allocated_in(node_windows)
            split += total
            split_alloc += allocated
            add(f"{fwd} backward", len(nodes), total, timeline.peak_in(node_windows), allocated)
        add(
            "backward (other)",
            len(evs),
            totals[short] - split,
            timeline.peak_in(windows),
            max(0, timeline.allocated_in(windows) - split_alloc),
        )
    add(OUTSIDE_PHASES, plan.iters, iteration - sum(totals.values()), 0, 0)
    return rows


_EVALUATE = "autograd::engine::evaluate_function:"


def _sequence_numbers(events: Sequence[Any], range_name: str) -> set[int]:
    """Autograd sequence numbers of the operators run inside the range."""
    return {
        int(e.sequence_nr)
        for e in events
        if not _is_device(e) and int(getattr(e, "sequence_nr", -1)) >= 0 and _under(e, range_name)
    }


def _node_windows(
    trace: dict[str, Any], seqs: set[int], origin: float
) -> list[tuple[float, float]]:
    """Where the backward nodes of those sequence numbers ran, in the timeline's time base."""
    spans = []
    for ev in trace.get("traceEvents", []):
        if ev.get("ph") != "X" or not str(ev.get("name", "")).startswith(_EVALUATE):
            continue
        if int(ev.get("args", {}).get("Sequence number", -1)) in seqs:
            ts = float(ev["ts"]) - origin
            spans.append((ts, ts + float(ev.get("dur", 0.0))))
    return spans


# -- output files ---------------------------------------------------------------------


def write_tables(profiles: Sequence[BackendProfile], out_dir: Path) -> None:
    rows = [r for p in profiles for r in p.kernels]
    _write_csv(
        out_dir / "kernels.csv", [asdict(r) for r in rows], list(KernelRow.__dataclass_fields__)
    )
    phases = [r for p in profiles for r in p.phases]
    if phases:
        _write_csv(
            out_dir / "phases.csv", [asdict(r) for r in phases], list(PhaseRow.__dataclass_fields__)
        )


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for row in rows:
            w.writerow({k: f"{v:.3f}" if isinstance(v, float) else v for k, v in row.items()})


def summary(
    plan: ProfilePlan, profiles: Sequence[BackendProfile], extra: dict[str, Any]
) -> dict[str, Any]:
    """What profile.json holds: the plan, and per backend the files, time and memory peak."""
    g = plan.case.geometry
    return {
        "schema_version": 1,
        "suite": plan.suite.name,
        "case": plan.case.name,
        "geometry": asdict(g),
        "device": str(plan.device),
        "dtype": plan.dtype.value,
        "mode": plan.mode.value,
        "layer": plan.layer,
        "warmup_iters": plan.warmup,
        "profiled_iters": plan.iters,
        "torch": torch.__version__,
        "backends": [
            {
                "backend": p.backend,
                "trace": p.trace_path.name,
                "memory_timeline": p.memory_path.name,
                "memory_snapshot": p.snapshot_path.name if p.snapshot_path else None,
                "time_basis": p.time_basis,
                "per_iter_us": p.per_iter_us,
                "peak_bytes": p.timeline.peak_bytes,
                "peak_time_us": p.timeline.peak_time_us,
                "peak_op": p.timeline.peak_op,
                "peak_phase": p.timeline.peak_phase,
                "held_at_peak": [asdict(a) for a in p.timeline.held_at_peak[:10]],
                "phases": [asdict(r) for r in p.phases],
                "notes": p.notes,
            }
            for p in profiles
        ],
        **extra,
    }
