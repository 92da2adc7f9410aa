"""Device timers: call a closure, return raw per-call samples in milliseconds.

A timer times the closure and nothing else; statistics live in invbench.stats.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import Protocol

import torch


class CacheMode(StrEnum):
    COLD = "cold"  # L2 flushed before every sample, outside the timed region
    HOT = "hot"  # back to back: the caches hold whatever the last call left


class Timer(Protocol):
    cache_mode: CacheMode
    method: str

    def sample(self, fn: Callable[[], object], n: int) -> list[float]: ...

    def synchronize(self) -> None: ...


class CpuTimer:
    """perf_counter around each call; CPU work is synchronous, so nothing else is needed."""

    cache_mode = CacheMode.HOT
    method = "perf_counter"

    def sample(self, fn: Callable[[], object], n: int) -> list[float]:
        out = []
        clock = time.perf_counter_ns
        for _ in range(n):
            t0 = clock()
            fn()
            out.append((clock() - t0) / 1e6)
        return out

    def synchronize(self) -> None:
        return None


class CudaTimer:
    """CUDA events on the stream the work runs on; one synchronisation per batch.

    In cold mode a buffer of twice the L2 size is zeroed before each sample, outside
    the events, so no sample starts with the previous call's data in L2.
    """

    method = "cuda-events"

    def __init__(self, device: torch.device, cache_mode: CacheMode = CacheMode.COLD) -> None:
        self.device = device
        self.cache_mode = cache_mode
        self._flush: torch.Tensor | None = None
        if cache_mode is CacheMode.COLD:
            l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 64 << 20
            self._flush = torch.empty(2 * l2, dtype=torch.uint8, device=device)

    def sample(self, fn: Callable[[], object], n: int) -> list[float]:
        stream = torch.cuda.current_stream(self.device)
        pairs = []
        for _ in range(n):
            if self._flush is not None:
                self._flush.zero_()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record(stream)
            fn()
            end.record(stream)
            pairs.append((start, end))
        end.synchronize()
        return [s.elapsed_time(e) for s, e in pairs]

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)


def make_timer(device: torch.device, cache_mode: CacheMode = CacheMode.COLD) -> Timer:
    if device.type == "cuda":
        return CudaTimer(device, cache_mode)
    return CpuTimer()
