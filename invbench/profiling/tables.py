"""torch.profiler events -> per-kernel, per-operator and per-phase tables."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from invbench.core.spec import Mode
from invbench.profiling.memory_timeline import MemoryTimeline
from invbench.profiling.plan import (
    OUTSIDE_OPS,
    OUTSIDE_PHASES,
    RANGE_PREFIX,
    KernelRow,
    PhaseRow,
    ProfilePlan,
)
from invbench.profiling.steps import iter_range, phase_range


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
