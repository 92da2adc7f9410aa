"""What a run records about the memory allocator it timed under (meta.json run.allocator).

Timings of ops that allocate depend on the allocator's settings, so two runs timed
under different ones are not compared. Runs leave the process's allocator as any
program has it. CPU runs written before this key existed had glibc's mmap and trim
thresholds pinned (for an older peak-memory method), which made every buffer of
64 KiB or more an mmap and page faults on every call.
"""

from __future__ import annotations

DEFAULT = "default"
PINNED = "mmap and trim thresholds pinned to 64 KiB"


def recorded(run: dict[str, object]) -> object:
    """The allocator settings of a run's meta (its "run" table); None when unknown."""
    if "allocator" in run:
        return run["allocator"]
    return PINNED if str(run.get("device", "")).startswith("cpu") else None
