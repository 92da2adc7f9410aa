"""What the engine keeps about one backend being timed in a group, and what its row says of it.

An arm has one part per closure it times: TOTAL (the row's samples) and, at the layer
level, generation and aggregation alone. Each part has its own estimate, graph, hidden
launches and samples; the row reports TOTAL's, and summarises the others as
``<part>_ms``, ``<part>_p20_ms`` and ``<part>_p80_ms``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from invbench.backends.base import Backend
from invbench.core.choices import CacheMode
from invbench.core.spec import Status
from invbench.core.stats import StopReason, Summary, summarize
from invbench.measure.clock_floor import ClockFloor
from invbench.measure.timing import LaunchGate
from invbench.running.levels.base import TOTAL, Check


@dataclass
class Part:
    """One closure of an arm being timed: the whole row's ("total"), or a part of it."""

    name: str
    fn: Callable[[], object]  # what the timer calls: the closure, or a graph's replay
    estimate_ms: float = 0.0  # one call
    calls: int = 1  # calls per timed fn() (graph replay)
    cache_mode: CacheMode = CacheMode.HOT
    hide_launch: bool = False
    gate: LaunchGate = field(default_factory=LaunchGate)  # this part's own hidden-launch sleep
    floor: ClockFloor = field(default_factory=ClockFloor)  # --min-clock
    batches: int = 0
    samples: list[float] = field(default_factory=list)  # per call, ms
    host_ms: list[float] = field(default_factory=list)  # host time per call (GPU)

    def label(self, backend: str) -> str:
        """The part's NVTX name: the backend's, or backend/part."""
        return backend if self.name == TOTAL else f"{backend}/{self.name}"

    @property
    def prefix(self) -> str:
        """What a note about this part starts with: nothing for TOTAL, else "gen: "."""
        return "" if self.name == TOTAL else f"{self.name}: "


@dataclass
class Arm:
    """One backend being timed in a group."""

    backend: Backend
    base: dict[str, Any]
    compile_ms: float
    check: Check
    peak_bytes: int | None
    mem_method: str
    parts: dict[str, Part] = field(default_factory=dict)  # TOTAL first
    elapsed_s: float = 0.0  # wall time spent sampling
    stop: StopReason | None = None
    error: tuple[Status, str] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> Part:
        return self.parts[TOTAL]

    def all_notes(self) -> list[str]:
        """The arm's notes, and for every part whose launches were not always hidden, why."""
        notes = list(self.notes)
        for part in self.parts.values():
            gate = part.gate
            if part.hide_launch and gate.unhidable is not None:
                notes.append(f"{part.prefix}launches not hidden: {gate.unhidable}")
            elif part.hide_launch and gate.dropped:
                notes.append(
                    f"{part.prefix}launch latency not hidden in {gate.dropped} of "
                    f"{part.batches} batches (their samples dropped)"
                )
        return notes

    def apply_clock_floor(self) -> None:
        """Every part's samples as the clock floor leaves them (never none), with its notes."""
        for part in self.parts.values():
            part.samples, notes = part.floor.final(part.samples)
            self.notes.extend(f"{part.prefix}{note}" for note in notes)

    def measure_fields(self) -> dict[str, Any]:
        """How the row was measured: compile time, memory, check, cache mode, launches."""
        total, gate = self.total, self.total.gate
        hidden = total.hide_launch and gate.hidden > 0 and gate.unhidable is None
        return dict(
            compile_ms=self.compile_ms,
            peak_mem_bytes=self.peak_bytes,
            mem_method=self.mem_method,
            max_rel_err=self.check.max_rel_err,
            cache_mode=total.cache_mode.value,
            launch_hidden=hidden and gate.dropped == 0,
            calls_per_sample=total.calls,
            host_ms=statistics.median(total.host_ms) if total.host_ms else None,
            launch_reruns=gate.reruns if total.hide_launch else None,
            clock_dropped=total.floor.dropped_samples,
        )

    def part_summaries(self) -> dict[str, Summary]:
        """Every part but TOTAL (the layer level's gen and agg) that has samples."""
        return {
            name: summarize(part.samples)
            for name, part in self.parts.items()
            if name != TOTAL and part.samples
        }

    @staticmethod
    def split_fields(parts: dict[str, Summary]) -> dict[str, Any]:
        """Median, p20 and p80 of each part (part_summaries) as the row's columns."""
        out: dict[str, Any] = {}
        for name, s in parts.items():
            out.update({f"{name}_ms": s.median, f"{name}_p20_ms": s.p20})
            out[f"{name}_p80_ms"] = s.p80
        return out
