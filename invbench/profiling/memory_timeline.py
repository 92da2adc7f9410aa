"""The memory timeline of a profiled run, read from the profiler's Chrome trace.

With ``profile_memory=True`` torch.profiler writes one ``[memory]`` instant event
per allocation and free: its address, the signed size, the device and the
allocator's total. This module replays them in order into a timeline of bytes
allocated since the start of the profiled window, finds the peak, and names what
held it: the allocations alive at the peak, each with the operator that made it.
"""

from __future__ import annotations

import bisect
import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# c10::DeviceType values that appear in the events' "Device Type" argument.
DEVICE_TYPE_CODE = {"cpu": 0, "cuda": 1}


@dataclass(frozen=True)
class MemoryEvent:
    time_us: float  # since the start of the profiled window
    delta_bytes: int  # > 0 allocation, < 0 free
    allocated_bytes: int  # allocated since the window started (can dip below 0)
    allocator_total_bytes: int  # what the allocator reported in total
    op: str  # outermost > innermost operator running when it happened
    phase: str  # innermost invbench range around it


@dataclass(frozen=True)
class LiveAllocation:
    bytes: int
    time_us: float
    op: str
    phase: str


@dataclass(frozen=True)
class MemoryTimeline:
    device: str
    events: tuple[MemoryEvent, ...]
    peak_bytes: int  # highest allocated_bytes (0 when nothing was allocated)
    peak_time_us: float
    peak_op: str  # the operator that made the allocation reaching the peak
    peak_phase: str
    held_at_peak: tuple[LiveAllocation, ...]  # alive at the peak, biggest first
    origin_us: float = 0.0  # trace timestamp that time_us counts from

    def peak_in(self, windows: Iterable[tuple[float, float]]) -> int:
        """The highest level reached inside any of the (start_us, end_us) windows."""
        best = 0
        for start, end in windows:
            level = self.level_at(start)
            best = max(best, level)
            for e in self.events:
                if start <= e.time_us <= end:
                    best = max(best, e.allocated_bytes)
        return best

    def allocated_in(self, windows: Iterable[tuple[float, float]]) -> int:
        """Bytes allocated (frees not subtracted) inside the windows."""
        total = 0
        for start, end in windows:
            total += sum(
                e.delta_bytes
                for e in self.events
                if start <= e.time_us <= end and e.delta_bytes > 0
            )
        return total

    def level_at(self, time_us: float) -> int:
        level = 0
        for e in self.events:
            if e.time_us > time_us:
                break
            level = e.allocated_bytes
        return level

    def write_csv(self, path: Path) -> None:
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(
                [
                    "time_us",
                    "delta_bytes",
                    "allocated_bytes",
                    "allocator_total_bytes",
                    "op",
                    "phase",
                ]
            )
            for e in self.events:
                w.writerow(
                    [
                        f"{e.time_us:.3f}",
                        e.delta_bytes,
                        e.allocated_bytes,
                        e.allocator_total_bytes,
                        e.op,
                        e.phase,
                    ]
                )


@dataclass(frozen=True)
class _Span:
    start: float
    end: float
    name: str
    annotation: bool


class _Stacks:
    """Which operators (on a thread) and invbench ranges (on any thread) enclose a moment.

    Ranges are matched across threads because the autograd engine runs the backward
    pass on threads of its own while the range that asked for it stays open.
    """

    def __init__(self, trace_events: Sequence[Mapping[str, Any]], range_prefix: str) -> None:
        by_tid: dict[Any, list[_Span]] = {}
        ranges: list[_Span] = []
        for ev in trace_events:
            if ev.get("ph") != "X" or ev.get("cat") not in ("cpu_op", "user_annotation"):
                continue
            ts = float(ev["ts"])
            name = str(ev["name"])
            span = _Span(ts, ts + float(ev.get("dur", 0.0)), name, ev["cat"] == "user_annotation")
            if not span.annotation:
                by_tid.setdefault(ev.get("tid"), []).append(span)
            elif name.startswith(range_prefix):
                ranges.append(span)
        self.spans = {tid: sorted(s, key=lambda x: x.start) for tid, s in by_tid.items()}
        self.starts = {tid: [s.start for s in spans] for tid, spans in self.spans.items()}
        self.ranges = sorted(ranges, key=lambda x: x.start)
        self.range_starts = [r.start for r in self.ranges]

    def at(self, tid: Any, ts: float) -> tuple[str, str]:
        spans = self.spans.get(tid, [])
        n = bisect.bisect_right(self.starts.get(tid, []), ts)
        ops = [s.name for s in spans[:n] if s.end >= ts]
        n = bisect.bisect_right(self.range_starts, ts)
        ranges = [r.name for r in self.ranges[:n] if r.end >= ts]
        if not ops:
            op = ""
        elif len(ops) == 1:
            op = ops[0]
        else:
            op = f"{ops[0]} > {ops[-1]}"
        return op, ranges[-1] if ranges else ""


def memory_timeline(
    trace: Mapping[str, Any], device: str, range_prefix: str = "invbench/"
) -> MemoryTimeline:
    """Replay the trace's memory events of one device ('cpu' or 'cuda')."""
    events: list[Mapping[str, Any]] = list(trace.get("traceEvents", []))
    code = DEVICE_TYPE_CODE[device]
    mem = [
        e
        for e in events
        if e.get("name") == "[memory]" and int(e.get("args", {}).get("Device Type", -1)) == code
    ]
    mem.sort(key=lambda e: (float(e["ts"]), int(e["args"].get("Ev Idx", 0))))
    timed = [float(e["ts"]) for e in events if e.get("ph") == "X" and "ts" in e]
    origin = min(timed + [float(e["ts"]) for e in mem], default=0.0)
    stacks = _Stacks(events, range_prefix)
    level = 0
    live: dict[int, LiveAllocation] = {}
    out: list[MemoryEvent] = []
    peak, peak_time, peak_op, peak_phase = 0, 0.0, "", ""
    held: tuple[LiveAllocation, ...] = ()
    for e in mem:
        args = e["args"]
        delta = int(args.get("Bytes", 0))
        addr = int(args.get("Addr", 0))
        t = float(e["ts"]) - origin
        op, phase = stacks.at(e.get("tid"), float(e["ts"]))
        level += delta
        if delta > 0:
            live[addr] = LiveAllocation(delta, t, op, phase)
        else:
            live.pop(addr, None)
        out.append(MemoryEvent(t, delta, level, int(args.get("Total Allocated", 0)), op, phase))
        if level > peak:
            peak, peak_time, peak_op, peak_phase = level, t, op, phase
            held = tuple(sorted(live.values(), key=lambda a: (-a.bytes, a.time_us)))
    return MemoryTimeline(device, tuple(out), peak, peak_time, peak_op, peak_phase, held, origin)
