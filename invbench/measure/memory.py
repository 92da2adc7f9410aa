"""Peak memory of one call of a closure, above what was allocated before it.

Both methods count what goes through torch's allocator and change nothing about the
process: on a GPU, torch's peak-allocated counter; on the CPU, the allocation and free
events torch's profiler reports for the call (CPU tensors have no peak counter).

An earlier CPU method read the peak resident set (VmHWM) and, to make it see every
block, pinned glibc's mmap and trim thresholds to 64 KiB for the whole process. That
turned every buffer of 64 KiB or more into an mmap, page faults and an munmap on every
timed call, so allocating backends (unfold most of all) read 2x to 4x slower than
under glibc's defaults, and by how much depended on the heap's layout. Timing and
memory now run under the allocator settings a user's program gets.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from invbench.measure.hygiene import collector_paused

# The smallest peak each method can tell from nothing. Results written before
# torch-cpu-peak replaced rss-hwm still carry rss-hwm, which saw only memory newly
# made resident: blocks under glibc's 64 KiB mmap threshold could reuse resident heap.
RESOLUTION_BYTES = {"rss-hwm": 1 << 16, "torch-cuda-peak": 0, "torch-cpu-peak": 0}

_MEMORY_EVENT = "[memory]"  # the name torch's profiler gives allocation and free events


def below_resolution(peak_bytes: float | None, method: str) -> bool:
    """Whether a recorded peak is under what its method can resolve."""
    if peak_bytes is None or peak_bytes != peak_bytes:  # None or NaN: nothing recorded
        return False
    return peak_bytes < RESOLUTION_BYTES.get(method, 0)


@dataclass(frozen=True)
class PeakMemory:
    bytes: int
    method: str  # how it was measured: torch-cuda-peak, torch-cpu-peak


def measure_peak(fn: Callable[[], object], device: torch.device) -> PeakMemory:
    """Run fn once and return its peak memory above the baseline.

    CUDA: torch's peak allocated bytes above those allocated before the call.
    CPU: the highest running total of the bytes torch allocated and freed during the
    call, in the order its profiler saw them. Memory a native kernel takes from malloc
    itself, outside torch's allocator, is not counted (nor is it on a GPU).

    The collector is off during the call, so garbage made before it is not freed
    inside it (which would lower the running total). No full collection is made
    first: with torch loaded one takes about 0.2 s, once per backend and case.
    """
    with collector_paused():
        return _measure_peak(fn, device)


def _measure_peak(fn: Callable[[], object], device: torch.device) -> PeakMemory:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        result = fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        del result
        return PeakMemory(max(peak, 0), "torch-cuda-peak")
    return PeakMemory(cpu_peak_bytes(fn), "torch-cpu-peak")


def cpu_peak_bytes(fn: Callable[[], object]) -> int:
    """The peak of torch's CPU allocations during fn, above what was allocated before.

    Through torch.autograd.profiler rather than torch.profiler, whose start imports
    torch._inductor (about 4 s in a process that has not compiled anything).
    """
    from torch.autograd.profiler import profile

    prof = profile(use_cpu=True, profile_memory=True)
    with _native_stderr_silenced():
        prof.__enter__()
    try:
        result = fn()
    finally:
        with _native_stderr_silenced():
            prof.__exit__(None, None, None)
    del result
    events = [e for e in _kineto_events(prof) if e.name() == _MEMORY_EVENT]
    events.sort(key=lambda e: e.start_ns())
    level = peak = 0
    for event in events:
        level += event.nbytes()
        peak = max(peak, level)
    return peak


def _kineto_events(prof: object) -> list[Any]:
    results = getattr(prof, "kineto_results", None)
    if results is None:
        raise OSError("torch's profiler returned no events to read memory from")
    return list(results.events())


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: the profiler's C++ side logs its start and
    stop there (torch 2.13), which would land in the middle of a run's display."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to redirect
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
