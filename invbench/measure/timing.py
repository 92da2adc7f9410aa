"""Device timers: call a closure, return raw per-call samples in milliseconds.

A timer times the closure and nothing else; statistics live in invbench.core.stats.
Python's garbage collector is off for the whole of every timed batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from invbench.core.choices import CacheMode
from invbench.measure.hygiene import collector_paused


class Timer(Protocol):
    cache_mode: CacheMode
    method: str
    resolution_ms: float  # the clock's resolution: no sample is known better than this
    last_hidden: bool  # whether the last hide_launch batch was enqueued before the GPU got to it
    last_host_ms: list[float]  # host time of each call in the last batch (enqueue cost on a GPU)
    busy: Callable[[Callable[[], bool]], AbstractContextManager[object]] | None

    def sample(
        self,
        fn: Callable[[], object],
        n: int,
        hide_launch: bool = False,
        gate: LaunchGate | None = None,
    ) -> list[float]: ...

    def synchronize(self) -> None: ...


class CpuTimer:
    """A clock around each call; CPU work is synchronous, so nothing else is needed.

    The clock (nanoseconds) can be injected, so tests can drive the runner with a fake one.
    """

    cache_mode = CacheMode.HOT
    method = "perf_counter"
    last_hidden = False
    busy: Callable[[Callable[[], bool]], AbstractContextManager[object]] | None = None  # unused

    def __init__(self, clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self.clock = clock
        self.resolution_ms = time.get_clock_info("perf_counter").resolution * 1e3
        self.last_host_ms: list[float] = []

    def sample(
        self,
        fn: Callable[[], object],
        n: int,
        hide_launch: bool = False,
        gate: LaunchGate | None = None,
    ) -> list[float]:
        out: list[float] = []
        clock = self.clock
        with collector_paused():
            for _ in range(n):
                t0 = clock()
                fn()
                out.append((clock() - t0) / 1e6)
        self.last_host_ms = list(out)
        return out

    def synchronize(self) -> None:
        return None


# cudaEventElapsedTime resolves about 0.5 us (CUDA runtime API reference).
CUDA_EVENT_RESOLUTION_MS = 0.0005
# torch.cuda._sleep spins for a number of GPU cycles; before the first batch calibrates
# it, assume this many cycles per millisecond (a 1.5 GHz SM clock).
_GUESS_CYCLES_PER_MS = 1.5e6
_HOST_US_PER_SAMPLE_GUESS = 40.0  # enqueue cost of one sample: flush, two events, the call
_GATE_MARGIN_MS = 0.1  # the blocking kernel must outlast the enqueue by at least this
_GATE_FACTOR = 2.0  # the blocking kernel lasts this many times the expected enqueue
HIDE_TRIES = 4  # tries for one batch in all, each half the size of the last (a full queue)


@dataclass
class LaunchGate:
    """One backend's calibration of the kernel that blocks the stream while it enqueues.

    Each backend has its own: one backend's enqueue cost (autograd, Python, many small
    kernels) must not size another's gate. Counters say what happened to its batches.
    """

    host_ms_per_sample: float = _HOST_US_PER_SAMPLE_GUESS / 1e3
    hidden: int = 0  # batches enqueued while the gate still held the stream
    reruns: int = 0  # exposed batches thrown away and run again (smaller, longer gate)
    dropped: int = 0  # batches still exposed after every try: no samples kept
    unhidable: str | None = None  # why this backend's launches cannot be hidden at all

    def gate_ms(self, n: int) -> float:
        return n * self.host_ms_per_sample * _GATE_FACTOR + 2 * _GATE_MARGIN_MS


class L2Flush:
    """Evicts L2 between samples by reading a clean buffer of twice its size.

    Reading leaves L2 full of clean lines, which the next sample evicts for free, and
    writes back, outside the timed region, whatever dirty lines the previous sample
    left. Zeroing a buffer instead (``method='zero'``, the older flush, kept to measure
    its bias) leaves L2 full of dirty lines that the next timed sample pays to write back.
    """

    def __init__(self, device: torch.device, nbytes: int, method: str = "read") -> None:
        if method not in ("read", "zero"):
            raise ValueError(f"flush method must be 'read' or 'zero', got {method!r}")
        self.method = method
        self.nbytes = nbytes
        self.buffer = torch.ones(max(1, nbytes // 4), dtype=torch.float32, device=device)
        self._sink = torch.empty((), dtype=torch.float32, device=device)
        torch.cuda.synchronize(device)

    def __call__(self) -> None:
        if self.method == "zero":
            self.buffer.zero_()
        else:
            torch.sum(self.buffer, dim=0, out=self._sink)


class Event(Protocol):
    def record(self, stream: Any) -> None: ...

    def elapsed_time(self, end: Any) -> float: ...

    def synchronize(self) -> None: ...

    def query(self) -> bool: ...


class CudaApi(Protocol):
    """What the timer uses of torch.cuda; tests drive the timer with a simulated GPU."""

    def stream(self) -> Any: ...

    def event(self) -> Event: ...

    def sleep(self, cycles: int) -> None: ...

    def synchronize(self) -> None: ...


class TorchCuda:
    def __init__(self, device: torch.device) -> None:
        self.device = device

    def stream(self) -> Any:
        return torch.cuda.current_stream(self.device)

    def event(self) -> Event:
        return torch.cuda.Event(enable_timing=True)

    def sleep(self, cycles: int) -> None:
        torch.cuda._sleep(cycles)

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)


class CudaTimer:
    """CUDA events on the stream the work runs on; one synchronisation per batch.

    In cold mode L2 is flushed before each sample, outside the events (L2Flush).

    With hide_launch the batch is enqueued behind torch.cuda._sleep, a kernel that
    spins on the GPU while the host enqueues every sample, so the events time the
    kernels back to back instead of the host's launch latency. The sleep is sized from
    the backend's own LaunchGate; a batch whose enqueue outlasted the sleep (checked
    against the sleep's own events) is thrown away and run again, smaller and behind a
    recalibrated sleep, and never returned. The host time of every call is kept
    (last_host_ms): with the stream blocked it is the pure enqueue cost of the call.

    busy, when set (the NVML sampler's), is entered while the host waits for a batch
    the GPU is running, with a function that says whether the GPU is still at it.
    """

    method = "cuda-events"
    resolution_ms = CUDA_EVENT_RESOLUTION_MS

    def __init__(
        self,
        device: torch.device,
        cache_mode: CacheMode = CacheMode.COLD,
        flush_method: str = "read",
        *,
        api: CudaApi | None = None,
        flush: Callable[[], object] | None = None,
        clock_ns: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        self.device = device
        self.cache_mode = cache_mode
        self.last_hidden = False
        self.last_host_ms: list[float] = []
        self.busy: Callable[[Callable[[], bool]], AbstractContextManager[object]] | None = None
        self.api: CudaApi = api if api is not None else TorchCuda(device)
        self.clock_ns = clock_ns
        self._flush: Callable[[], object] | None = None
        self._cycles_per_ms = _GUESS_CYCLES_PER_MS
        self._shared_gate = LaunchGate()
        if cache_mode is CacheMode.COLD:
            self._flush = flush or L2Flush(device, 2 * l2_cache_bytes(device), flush_method)

    def sample(
        self,
        fn: Callable[[], object],
        n: int,
        hide_launch: bool = False,
        gate: LaunchGate | None = None,
    ) -> list[float]:
        if n < 1:
            return []
        if not hide_launch:
            self.last_hidden = False
            return self._batch(fn, n, None)[0]
        gate = gate if gate is not None else self._shared_gate
        if gate.unhidable is not None:
            self.last_hidden = False
            return self._batch(fn, n, None)[0]
        size = n
        for _ in range(HIDE_TRIES):
            samples, hidden = self._batch(fn, size, gate)
            if hidden:
                gate.hidden += 1
                self.last_hidden = True
                return samples
            gate.reruns += 1
            size = max(1, size // 2)
        gate.dropped += 1
        self.last_hidden = False
        if gate.hidden == 0 or gate.dropped >= HIDE_TRIES:
            gate.unhidable = (
                f"the host enqueue of a batch outlasted the blocking kernel in {HIDE_TRIES} "
                "tries (the closure synchronises, or the launch queue fills)"
            )
        return []

    def _batch(
        self, fn: Callable[[], object], n: int, gate: LaunchGate | None
    ) -> tuple[list[float], bool]:
        api = self.api
        stream = api.stream()
        pairs = []
        host_ns: list[int] = []
        blocker: tuple[Event, Event] | None = None
        cycles = 0
        if gate is not None:
            cycles = max(1000, int(gate.gate_ms(n) * self._cycles_per_ms))
            blocker = (api.event(), api.event())
            blocker[0].record(stream)
            api.sleep(cycles)
            blocker[1].record(stream)
        clock = self.clock_ns
        with collector_paused():
            t0 = clock()
            for _ in range(n):
                if self._flush is not None:
                    self._flush()
                start, end = api.event(), api.event()
                start.record(stream)
                c0 = clock()
                fn()
                host_ns.append(clock() - c0)
                end.record(stream)
                pairs.append((start, end))
            enqueue_ms = (clock() - t0) / 1e6
            if self.busy is not None:
                with self.busy(lambda: not end.query()):
                    end.synchronize()
            else:
                end.synchronize()
        self.last_host_ms = [ns / 1e6 for ns in host_ns]
        hidden = False
        if blocker is not None and gate is not None:
            slept_ms = blocker[0].elapsed_time(blocker[1])
            hidden = enqueue_ms + _GATE_MARGIN_MS < slept_ms
            if slept_ms > 0:
                self._cycles_per_ms = cycles / slept_ms
            gate.host_ms_per_sample = max(enqueue_ms / n, 1e-4)
        return [s.elapsed_time(e) for s, e in pairs], hidden

    def synchronize(self) -> None:
        self.api.synchronize()


def probe_ms(
    timer: Timer, fn: Callable[[], object], calls: int, gate: LaunchGate | None = None
) -> float:
    """Median of a few calls: GPU time from hidden launches where a gate is given.

    An unhidden probe of a short kernel times the host's launch latency, not the
    kernel; with a gate the probe runs hidden, and falls back to an unhidden one
    only when the backend's launches cannot be hidden (gate.unhidable says why).
    """
    samples = timer.sample(fn, calls, hide_launch=gate is not None, gate=gate)
    if not samples:
        samples = timer.sample(fn, calls)
    return sorted(samples)[len(samples) // 2]


def ci_floor_ms(resolution_ms: float, calls: int = 1) -> float:
    """The least CI half-width a median of this timer's samples can claim: half a tick.

    Samples quantised by the timer can all fall on one tick and make the CI of the
    median look zero-wide; the stopping rule never counts it narrower than this, so a
    few-microsecond kernel cannot look converged on the timer's granularity alone. A
    sample that is one replay of ``calls`` calls resolves each call ``calls`` times finer.
    """
    return resolution_ms / 2 / max(calls, 1)


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


def make_timer(
    device: torch.device, cache_mode: CacheMode = CacheMode.COLD, flush_method: str = "read"
) -> Timer:
    if device.type == "cuda":
        return CudaTimer(device, cache_mode, flush_method)
    return CpuTimer()
