"""Device timers: call a closure, return raw per-call samples in milliseconds.

A timer times the closure and nothing else; statistics live in invbench.core.stats.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

import torch

from invbench.core.choices import CacheMode


class Timer(Protocol):
    cache_mode: CacheMode
    method: str
    last_hidden: bool  # whether the last hide_launch batch was enqueued before the GPU got to it

    def sample(
        self, fn: Callable[[], object], n: int, hide_launch: bool = False
    ) -> list[float]: ...

    def synchronize(self) -> None: ...


class CpuTimer:
    """A clock around each call; CPU work is synchronous, so nothing else is needed.

    The clock (nanoseconds) can be injected, so tests can drive the runner with a fake one.
    """

    cache_mode = CacheMode.HOT
    method = "perf_counter"
    last_hidden = False

    def __init__(self, clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self.clock = clock

    def sample(self, fn: Callable[[], object], n: int, hide_launch: bool = False) -> list[float]:
        out: list[float] = []
        clock = self.clock
        for _ in range(n):
            t0 = clock()
            fn()
            out.append((clock() - t0) / 1e6)
        return out

    def synchronize(self) -> None:
        return None


# torch.cuda._sleep spins for a number of GPU cycles; before the first batch calibrates
# it, assume this many cycles per millisecond (a 1.5 GHz SM clock).
_GUESS_CYCLES_PER_MS = 1.5e6
_HOST_US_PER_SAMPLE_GUESS = 40.0  # enqueue cost of one sample: flush, two events, the call
_GATE_MARGIN_MS = 0.1  # the blocking kernel must outlast the enqueue by at least this


class CudaTimer:
    """CUDA events on the stream the work runs on; one synchronisation per batch.

    In cold mode a buffer of twice the L2 size is zeroed before each sample, outside
    the events, so no sample starts with the previous call's data in L2.

    With hide_launch the batch is enqueued behind torch.cuda._sleep, a kernel that
    spins on the GPU while the host enqueues every sample, so the events time the
    kernels back to back instead of the host's launch latency. The sleep is
    calibrated from the previous batch; last_hidden says whether the host finished
    enqueuing before the sleep ended (checked against the sleep's own events).
    """

    method = "cuda-events"

    def __init__(self, device: torch.device, cache_mode: CacheMode = CacheMode.COLD) -> None:
        self.device = device
        self.cache_mode = cache_mode
        self.last_hidden = False
        self._flush: torch.Tensor | None = None
        self._cycles_per_ms = _GUESS_CYCLES_PER_MS
        self._host_ms_per_sample = _HOST_US_PER_SAMPLE_GUESS / 1e3
        if cache_mode is CacheMode.COLD:
            self._flush = torch.empty(2 * l2_cache_bytes(device), dtype=torch.uint8, device=device)

    def sample(self, fn: Callable[[], object], n: int, hide_launch: bool = False) -> list[float]:
        if n < 1:
            return []
        stream = torch.cuda.current_stream(self.device)
        pairs = []
        gate: tuple[torch.cuda.Event, torch.cuda.Event] | None = None
        cycles = 0
        if hide_launch:
            gate_ms = n * self._host_ms_per_sample * 2.0 + 2 * _GATE_MARGIN_MS
            cycles = max(1000, int(gate_ms * self._cycles_per_ms))
            gate = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            gate[0].record(stream)
            torch.cuda._sleep(cycles)
            gate[1].record(stream)
        t0 = time.perf_counter()
        for _ in range(n):
            if self._flush is not None:
                self._flush.zero_()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record(stream)
            fn()
            end.record(stream)
            pairs.append((start, end))
        enqueue_ms = (time.perf_counter() - t0) * 1e3
        end.synchronize()
        if gate is not None:
            slept_ms = gate[0].elapsed_time(gate[1])
            self.last_hidden = enqueue_ms + _GATE_MARGIN_MS < slept_ms
            if slept_ms > 0:
                self._cycles_per_ms = cycles / slept_ms
            self._host_ms_per_sample = max(enqueue_ms / n, 1e-4)
        return [s.elapsed_time(e) for s, e in pairs]

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)


def l2_cache_bytes(device: torch.device) -> int:
    """The device's L2 size; 64 MiB where torch does not report it."""
    props = torch.cuda.get_device_properties(device)
    return int(getattr(props, "L2_cache_size", 0) or 64 << 20)


def capture_graph(
    fn: Callable[[], object], calls: int, device: torch.device
) -> Callable[[], object]:
    """fn called `calls` times, captured in a CUDA graph; returns the graph's replay.

    Warm-up calls run on a side stream first, as torch's graph capture requires.
    Raises whatever capture raises (an op that cannot be captured, a sync inside fn).
    """
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream(device).wait_stream(side)
    torch.cuda.synchronize(device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    torch.cuda.synchronize(device)
    replay: Callable[[], object] = graph.replay
    return replay


def graph_calls(estimate_ms: float, replay_ms: float = 0.5, most: int = 200) -> int:
    """Calls per captured graph: enough for about replay_ms of work per replay."""
    return max(1, min(most, math.ceil(replay_ms / max(estimate_ms, 1e-4))))


def make_timer(device: torch.device, cache_mode: CacheMode = CacheMode.COLD) -> Timer:
    if device.type == "cuda":
        return CudaTimer(device, cache_mode)
    return CpuTimer()
