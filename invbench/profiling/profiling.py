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
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from invbench.backends.base import Backend
from invbench.measure import nvtx
from invbench.profiling.memory_timeline import memory_timeline
from invbench.profiling.plan import (
    CAPTURE_RANGE,
    RANGE_PREFIX,
    WARMUP_RANGE,
    BackendProfile,
    KernelRow,
    PhaseRow,
    ProfilePlan,
    whole_layer,
)
from invbench.profiling.steps import build_step, iter_range, phase, phase_range, synchronize
from invbench.profiling.tables import cpu_op_table, device_kernel_table, phase_table


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
