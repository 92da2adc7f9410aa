"""A simulated GPU stream for CudaTimer on the CPU: a host clock, a device timeline, events.

The host enqueues work; the device runs it in order, each item starting when both the
device is free and the host has enqueued it. An event records the device time at which
the stream reaches it. Host calls cost host time; a kernel costs device time. This is
enough to reproduce what launch latency does to event timing, and what a blocking
kernel in front of a batch undoes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ENQUEUE_US = 2.0  # host cost of recording an event or enqueuing the sleep or a flush


class FakeStream:
    pass


@dataclass
class FakeGpu:
    cycles_per_ms: float = 1.98e6  # the sleep kernel's true rate
    host_ms: float = 0.0
    device_ms: float = 0.0  # when the device is free
    queue_depth: int = 1_000_000  # pending items before an enqueue blocks
    pending: list[float] = field(default_factory=list)  # end times of enqueued items
    kernels: list[tuple[str, float, float]] = field(default_factory=list)  # name, start, end
    stream_obj: FakeStream = field(default_factory=FakeStream)

    # -- the host side ------------------------------------------------------------------
    def clock_ns(self) -> int:
        return round(self.host_ms * 1e6)

    def spend(self, ms: float) -> None:
        self.host_ms += ms

    def enqueue(self, name: str, device_ms: float, host_ms: float = ENQUEUE_US / 1e3) -> float:
        """Host spends host_ms, then the item joins the stream; returns its end time."""
        self.spend(host_ms)
        self.pending = [t for t in self.pending if t > self.host_ms]
        if len(self.pending) >= self.queue_depth:  # the launch queue is full: wait
            self.host_ms = self.pending[len(self.pending) - self.queue_depth]
            self.pending = [t for t in self.pending if t > self.host_ms]
        start = max(self.device_ms, self.host_ms)
        self.device_ms = start + device_ms
        self.pending.append(self.device_ms)
        self.kernels.append((name, start, self.device_ms))
        return self.device_ms

    # -- CudaApi ------------------------------------------------------------------------
    def stream(self) -> FakeStream:
        return self.stream_obj

    def event(self) -> FakeEvent:
        return FakeEvent(self)

    def sleep(self, cycles: int) -> None:
        self.enqueue("sleep", cycles / self.cycles_per_ms)

    def synchronize(self) -> None:
        self.host_ms = max(self.host_ms, self.device_ms)


class FakeEvent:
    def __init__(self, gpu: FakeGpu) -> None:
        self.gpu = gpu
        self.at: float | None = None

    def record(self, stream: object) -> None:
        self.at = self.gpu.enqueue("event", 0.0)

    def elapsed_time(self, end: FakeEvent) -> float:
        assert self.at is not None and end.at is not None
        return end.at - self.at

    def synchronize(self) -> None:
        assert self.at is not None
        self.gpu.host_ms = max(self.gpu.host_ms, self.at)

    def query(self) -> bool:
        assert self.at is not None
        return self.at <= self.gpu.host_ms


@dataclass
class FakeKernel:
    """A closure: host_ms of Python and launch cost, then device_ms of GPU work."""

    gpu: FakeGpu
    device_ms: float
    host_ms: float
    name: str = "kernel"
    syncs: bool = False  # reads a result back inside the call (.item())
    calls: int = 0

    def __call__(self) -> None:
        self.calls += 1
        self.gpu.enqueue(self.name, self.device_ms, self.host_ms)
        if self.syncs:
            self.gpu.synchronize()


@dataclass
class FakeFlush:
    gpu: FakeGpu
    device_ms: float = 0.03
    calls: int = 0

    def __call__(self) -> None:
        self.calls += 1
        self.gpu.enqueue("flush", self.device_ms)
