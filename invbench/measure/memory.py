"""Peak memory of one call of a closure, above what was allocated before it."""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_MMAP_THRESHOLD = 1 << 16  # glibc: blocks this large are mmapped and unmapped when freed

# The smallest peak each method can tell from nothing. rss-hwm sees only memory the
# process newly makes resident: blocks under glibc's mmap threshold come from the heap,
# whose pages still resident (partly used by other objects) can absorb them, so a
# smaller peak (often 0 B) says nothing about the call.
RESOLUTION_BYTES = {"rss-hwm": _MMAP_THRESHOLD, "torch-cuda-peak": 0}  # torch counts every byte


def below_resolution(peak_bytes: float | None, method: str) -> bool:
    """Whether a recorded peak is under what its method can resolve."""
    if peak_bytes is None or peak_bytes != peak_bytes:  # None or NaN: nothing recorded
        return False
    return peak_bytes < RESOLUTION_BYTES.get(method, 0)


_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class PeakMemory:
    bytes: int
    method: str  # how it was measured: torch-cuda-peak, rss-hwm


def _proc_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"{field} not in {_STATUS}")


def rss_hwm_supported() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        _proc_kib("VmHWM")
        return True
    except OSError:
        return False


def return_freed_memory_to_os() -> None:
    """Make glibc hand every freed block of 64 KiB or more back to the OS at once.

    Without it glibc keeps freed tensors in its heap, so a later call's allocations
    reuse resident pages and RSS growth underestimates what the call needed.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-3, _MMAP_THRESHOLD)  # M_MMAP_THRESHOLD (also stops its dynamic growth)
    libc.mallopt(-1, _MMAP_THRESHOLD)  # M_TRIM_THRESHOLD
    libc.malloc_trim(0)  # and hand back what is already free in the heap


def measure_peak(fn: Callable[[], object], device: torch.device) -> PeakMemory:
    """Run fn once and return its peak memory above the baseline.

    CUDA: torch's peak allocated bytes above those allocated before the call.
    CPU: the process's peak resident set (VmHWM, reset through /proc/self/clear_refs)
    above its resident set before the call.
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        result = fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        del result
        return PeakMemory(max(peak, 0), "torch-cuda-peak")
    # Whatever ran before in this process (another row, another test) may have left
    # freed pages resident, which the call would reuse without growing RSS.
    return_freed_memory_to_os()
    _CLEAR_REFS.write_text("5")
    base = _proc_kib("VmRSS")
    result = fn()
    peak = _proc_kib("VmHWM") - base
    del result
    return PeakMemory(max(peak, 0), "rss-hwm")
