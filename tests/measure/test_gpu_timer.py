"""CudaTimer on a simulated GPU: hidden launches, per-backend gates, re-runs, the flush."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
import torch

from invbench.core.choices import CacheMode
from invbench.measure.timing import (
    CUDA_EVENT_RESOLUTION_MS,
    HIDE_TRIES,
    CudaTimer,
    LaunchGate,
    probe_ms,
)
from tests.measure.fake_gpu import FakeFlush, FakeGpu, FakeKernel


def timer(gpu: FakeGpu, cache: CacheMode = CacheMode.HOT, flush: FakeFlush | None = None):
    return CudaTimer(
        torch.device("cuda"), cache, api=gpu, flush=flush, clock_ns=gpu.clock_ns
    )  # no torch.cuda call is made: the simulated GPU stands in for it


def test_unhidden_events_time_the_launch_and_hidden_ones_the_kernel() -> None:
    gpu = FakeGpu()
    t = timer(gpu)
    kernel = FakeKernel(gpu, device_ms=0.003, host_ms=0.020)  # launch-bound
    exposed = t.sample(kernel, 20)
    assert min(exposed) > 0.015  # the events saw the host's 20 us, not the 3 us kernel
    gate = LaunchGate()
    hidden = t.sample(kernel, 20, hide_launch=True, gate=gate)
    assert t.last_hidden and gate.hidden == 1 and gate.reruns == 0
    assert hidden == pytest.approx([0.003] * 20, abs=1e-9)
    # host time per call is its own number: the enqueue cost, larger than the GPU time
    assert t.last_host_ms == pytest.approx([0.020] * 20, abs=1e-9)


def test_an_exposed_batch_is_run_again_and_never_returned() -> None:
    gpu = FakeGpu()
    t = timer(gpu)
    kernel = FakeKernel(gpu, device_ms=0.010, host_ms=0.200)  # autograd-like host cost
    gate = LaunchGate()  # guesses 40 us per sample: far too short a sleep for 200 us
    samples = t.sample(kernel, 10, hide_launch=True, gate=gate)
    assert gate.reruns == 1 and gate.hidden == 1 and t.last_hidden
    assert kernel.calls == 10 + 5  # the exposed batch, then half of it behind a longer sleep
    assert samples == pytest.approx([0.010] * 5, abs=1e-9)  # no launch gap in any sample
    assert gate.host_ms_per_sample >= 0.2
    again = t.sample(kernel, 10, hide_launch=True, gate=gate)  # calibrated: hidden at once
    assert gate.reruns == 1 and len(again) == 10


def test_gates_are_calibrated_per_backend() -> None:
    def exposed_batches(per_backend: bool) -> int:
        gpu = FakeGpu()
        t = timer(gpu)
        slow = FakeKernel(gpu, device_ms=0.005, host_ms=0.150, name="slow")
        fast = FakeKernel(gpu, device_ms=0.005, host_ms=0.004, name="fast")
        gates = {k.name: LaunchGate() for k in (slow, fast)}
        for _ in range(6):
            for k in (slow, fast):
                gate = gates[k.name] if per_backend else None
                assert t.sample(k, 20, hide_launch=True, gate=gate)
        if per_backend:
            return sum(g.reruns for g in gates.values())
        return t._shared_gate.reruns

    assert exposed_batches(per_backend=True) == 1  # the slow one's first batch only
    assert exposed_batches(per_backend=False) >= 6  # the fast one shrinks the slow one's gate


def test_a_closure_that_synchronises_cannot_be_hidden_and_the_probe_says_so() -> None:
    gpu = FakeGpu()
    t = timer(gpu)
    kernel = FakeKernel(gpu, device_ms=0.050, host_ms=0.010, syncs=True)
    gate = LaunchGate()
    assert t.sample(kernel, 8, hide_launch=True, gate=gate) == []
    assert not t.last_hidden and gate.reruns == HIDE_TRIES and gate.dropped == 1
    assert gate.unhidable is not None and "synchronises" in gate.unhidable
    estimate = probe_ms(t, kernel, 3, gate)  # falls back to unhidden samples
    assert estimate == pytest.approx(0.050 + 0.010, rel=0.2)


def test_the_probe_estimates_gpu_time_when_launches_can_be_hidden() -> None:
    gpu = FakeGpu()
    t = timer(gpu)
    kernel = FakeKernel(gpu, device_ms=0.004, host_ms=0.030)
    assert probe_ms(t, kernel, 3) > 0.025  # unhidden: the launch latency
    assert probe_ms(t, kernel, 3, LaunchGate()) == pytest.approx(0.004, abs=1e-9)


def test_the_flush_runs_before_each_sample_outside_its_events() -> None:
    gpu = FakeGpu()
    flush = FakeFlush(gpu, device_ms=0.040)
    t = timer(gpu, CacheMode.COLD, flush)
    kernel = FakeKernel(gpu, device_ms=0.002, host_ms=0.001)
    samples = t.sample(kernel, 12, hide_launch=True, gate=LaunchGate())
    assert flush.calls == 12
    assert samples == pytest.approx([0.002] * 12, abs=1e-9)
    names = [name for name, _, _ in gpu.kernels if name in ("flush", "kernel")]
    assert names == ["flush", "kernel"] * 12


def test_the_telemetry_hook_is_entered_while_the_gpu_runs_the_batch() -> None:
    gpu = FakeGpu()
    t = timer(gpu)
    seen: list[tuple[bool, float]] = []

    @contextlib.contextmanager
    def busy(still_busy: Callable[[], bool]) -> Iterator[None]:
        seen.append((still_busy(), gpu.host_ms))
        yield
        seen.append((still_busy(), gpu.host_ms))

    t.busy = busy
    kernel = FakeKernel(gpu, device_ms=1.0, host_ms=0.01)
    t.sample(kernel, 5, hide_launch=True, gate=LaunchGate())
    (entered, _), (left, end) = seen
    assert entered is True and left is False  # busy on entry, done once synchronised
    assert end == pytest.approx(gpu.device_ms)


def test_a_full_launch_queue_exposes_a_batch_and_smaller_batches_fit() -> None:
    gpu = FakeGpu(queue_depth=40)  # a flush, two events and a kernel per sample
    t = timer(gpu, CacheMode.COLD, FakeFlush(gpu, device_ms=0.001))
    kernel = FakeKernel(gpu, device_ms=0.5, host_ms=0.005)
    gate = LaunchGate()
    samples = t.sample(kernel, 40, hide_launch=True, gate=gate)
    # 40, 20 and 10 samples overflow the queue (the host waits: exposed); 5 fit
    assert gate.reruns == 3 and gate.hidden == 1 and t.last_hidden
    assert samples == pytest.approx([0.5] * 5)


def test_timer_resolutions() -> None:
    assert timer(FakeGpu()).resolution_ms == CUDA_EVENT_RESOLUTION_MS == 0.0005
