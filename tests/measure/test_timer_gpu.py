"""The timer on a real GPU: the flush's bias, hidden launches, host time, busy NVML readings.

Each test prints what it measured (run with -rA to see it in the log).
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from invbench.core.choices import CacheMode
from invbench.measure.telemetry import NvmlSampler, nvml_index
from invbench.measure.timing import CudaTimer, LaunchGate, l2_cache_bytes, probe_ms

pytestmark = pytest.mark.gpu

DEVICE = torch.device("cuda")


def _median(
    timer: CudaTimer, fn: object, rounds: int = 30, n: int = 20, gate: LaunchGate | None = None
) -> float:
    samples: list[float] = []
    gate = gate or LaunchGate()
    for _ in range(rounds):
        samples += timer.sample(fn, n, hide_launch=True, gate=gate)  # type: ignore[arg-type]
    return statistics.median(samples)


def test_the_zeroing_flush_biases_the_next_sample_and_the_reading_flush_does_not() -> None:
    """A copy of a quarter of L2, after each flush: zeroing leaves dirty lines to evict."""
    n = l2_cache_bytes(DEVICE) // 4 // 4 // 2  # src + dst: a quarter of L2
    src = torch.randn(n, device=DEVICE)
    dst = torch.empty_like(src)

    def copy() -> None:
        dst.copy_(src)

    zero = CudaTimer(DEVICE, CacheMode.COLD, flush_method="zero")
    read = CudaTimer(DEVICE, CacheMode.COLD, flush_method="read")
    hot = CudaTimer(DEVICE, CacheMode.HOT)
    for t in (zero, read, hot):
        t.sample(copy, 50)  # warm-up
    medians: dict[str, list[float]] = {"zero": [], "read": [], "hot": []}
    for _ in range(5):  # interleaved, so drift hits all three alike
        for name, t in (("zero", zero), ("read", read), ("hot", hot)):
            medians[name].append(_median(t, copy, rounds=6))
    z, r, h = (statistics.median(medians[k]) for k in ("zero", "read", "hot"))
    print(
        f"copy of {2 * n * 4 / 1e6:.1f} MB: after zeroing flush {z * 1e3:.2f} us, after "
        f"reading flush {r * 1e3:.2f} us, hot {h * 1e3:.2f} us; bias of the old flush "
        f"{(z - r) / r:+.1%}"
    )
    assert r > h  # the reading flush does evict the copy's data
    assert r <= z * 1.02  # and leaves no dirty lines for the next sample to write back


def test_hidden_launches_time_the_gpu_and_host_time_shows_a_launch_bound_closure() -> None:
    x = torch.zeros(1, device=DEVICE)

    def many_tiny_kernels() -> None:
        for _ in range(50):
            x.add_(1.0)

    timer = CudaTimer(DEVICE, CacheMode.HOT)
    timer.sample(many_tiny_kernels, 20)
    exposed = statistics.median(timer.sample(many_tiny_kernels, 50))
    gate = LaunchGate()
    hidden = _median(timer, many_tiny_kernels, rounds=5, n=20, gate=gate)
    gate_host = statistics.median(timer.last_host_ms)
    print(
        f"50 tiny kernels: {exposed * 1e3:.1f} us unhidden, {hidden * 1e3:.1f} us GPU time "
        f"hidden, host {gate_host * 1e3:.1f} us per call"
    )
    assert gate.unhidable is None
    assert hidden < exposed  # the unhidden events timed the host's launches
    assert gate_host > hidden  # launch-bound: the host column shows it


def test_the_probe_of_a_short_kernel_is_gpu_time_when_hidden() -> None:
    def short() -> None:
        torch.cuda._sleep(2000)  # about 1 us

    timer = CudaTimer(DEVICE, CacheMode.HOT)
    timer.sample(short, 20)
    plain = probe_ms(timer, short, 5)
    hidden = probe_ms(timer, short, 5, LaunchGate())
    print(f"probe of a ~1 us kernel: {plain * 1e3:.2f} us unhidden, {hidden * 1e3:.2f} us hidden")
    assert hidden <= plain


def test_nvml_reads_clocks_while_batches_run() -> None:
    sampler = NvmlSampler(nvml_index(DEVICE), interval_s=0.005)
    if not sampler.available:
        pytest.skip(f"NVML: {sampler.reason}")
    timer = CudaTimer(DEVICE, CacheMode.HOT)
    timer.busy = sampler.busy
    gate = LaunchGate()

    def work() -> None:
        torch.cuda._sleep(200_000)  # about 0.1 ms

    idle = sampler.read().sm_mhz
    sampler.start()
    try:
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            with sampler.window("a", timing=True):
                timer.sample(work, 100, hide_launch=True, gate=gate)  # about 10 ms
            time.sleep(0.01)
            if sampler.energy_resolution_s is not None and time.monotonic() > end - 2.5:
                break
    finally:
        sampler.stop()
    tele = sampler.take("a")
    print(
        f"SM clock idle {idle} MHz, over busy readings {tele.sm_clock_mhz} MHz "
        f"({tele.busy_readings} of {tele.n_readings} readings), max {sampler.max_sm_clock_mhz}; "
        f"energy counter updates every {sampler.energy_resolution_s} s; "
        f"power {tele.power_w_mean} W"
    )
    assert tele.busy_readings > 0 and tele.sm_clock_mhz is not None
    assert gate.hidden > 0
