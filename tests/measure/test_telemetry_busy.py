"""NVML summaries over busy time, the energy counter's resolution, and the clock floor."""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace
from typing import Any

import pytest

from invbench.measure import telemetry
from invbench.measure.clock_floor import ClockFloor
from invbench.measure.health import row_warnings
from invbench.measure.telemetry import ENERGY_MIN_UPDATES, NvmlSampler


class ScriptedNvml:
    """pynvml with a GPU that idles at 345 MHz and runs at 1980 MHz while busy.

    Its energy counter grows by 300 W of power but is updated only every `period_s`
    seconds of the test's clock, as coarse counters are.
    """

    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, period_s: float = 0.1) -> None:
        self.now = 0.0
        self.busy = False
        self.period_s = period_s

    def clock(self) -> float:
        return self.now

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        return "h"

    def nvmlDeviceGetMaxClockInfo(self, h: str, kind: int) -> int:
        return 1980

    def nvmlDeviceGetClockInfo(self, h: str, kind: int) -> float:
        if kind == self.NVML_CLOCK_SM:
            return 1980.0 if self.busy else 345.0
        return 2619.0

    def nvmlDeviceGetTemperature(self, h: str, sensor: int) -> int:
        return 50

    def nvmlDeviceGetPowerUsage(self, h: str) -> int:
        return 300_000 if self.busy else 90_000

    def nvmlDeviceGetUtilizationRates(self, h: str) -> Any:
        return SimpleNamespace(gpu=100 if self.busy else 0)

    def nvmlDeviceGetMemoryInfo(self, h: str) -> Any:
        return SimpleNamespace(used=1 << 30)

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: str) -> int:
        return 0 if self.busy else 0x1

    def nvmlDeviceGetTotalEnergyConsumption(self, h: str) -> float:
        return math.floor(self.now / self.period_s) * self.period_s * 300_000.0  # mJ


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> ScriptedNvml:
    fake = ScriptedNvml()
    monkeypatch.setattr(telemetry, "_nvml", lambda: fake)
    return fake


def poll(sampler: NvmlSampler, nvml: ScriptedNvml, seconds: float, step: float = 0.01) -> None:
    """What the background thread does, on the test's clock."""
    end = nvml.now + seconds
    while nvml.now < end - 1e-12:
        nvml.now += step
        sampler._record()


def test_clocks_come_from_busy_readings_only(nvml: ScriptedNvml) -> None:
    sampler = NvmlSampler(0, clock=nvml.clock)
    for _ in range(5):  # five batches, each after an idle gap inside the timing window
        with sampler.window("a", timing=True):
            poll(sampler, nvml, 0.05)  # idle: stats, Python, the next batch's set-up
            nvml.busy = True
            with sampler.busy(lambda: nvml.busy):
                poll(sampler, nvml, 0.03)
            nvml.busy = False
    tele = sampler.take("a")
    assert tele.sm_clock_mhz == 1980.0 and tele.power_w_mean == 300.0
    assert tele.gpu_util_pct == 100.0 and tele.throttle_reasons == ""
    assert tele.busy_readings == 5 * (1 + 3)  # one at each batch's start, three polls
    assert sampler.last_batch_sm_mhz == 1980.0
    warnings = row_warnings(None, tele, sampler.max_sm_clock_mhz, 0)
    assert not any(w.startswith("low clock") for w in warnings)


def test_a_reading_after_the_batch_ended_does_not_count(nvml: ScriptedNvml) -> None:
    sampler = NvmlSampler(0, clock=nvml.clock)
    with sampler.window("a", timing=True), sampler.busy(lambda: False):
        poll(sampler, nvml, 0.05)
    tele = sampler.take("a")
    assert tele.busy_readings == 0 and tele.sm_clock_mhz is None
    assert sampler.last_batch_sm_mhz is None


def test_preparing_windows_count_for_memory_only(nvml: ScriptedNvml) -> None:
    sampler = NvmlSampler(0, clock=nvml.clock)
    with sampler.window("hook", timing=True), sampler.busy(lambda: False):
        pass  # a timer reports busy time to this sampler
    with sampler.window("a", timing=False):
        poll(sampler, nvml, 0.05)
    tele = sampler.take("a")
    assert tele.nvml_mem_peak_bytes == 1 << 30 and tele.n_readings == 6
    assert tele.busy_readings == 0 and tele.sm_clock_mhz is None


def test_without_a_timer_reporting_busy_time_every_timing_reading_counts(
    nvml: ScriptedNvml,
) -> None:
    sampler = NvmlSampler(0, clock=nvml.clock)  # a runner that does not hook its timer
    with sampler.window("a", timing=True):
        poll(sampler, nvml, 0.05)
    tele = sampler.take("a")
    assert tele.n_readings == 6 and tele.busy_readings == 0
    assert tele.sm_clock_mhz == 345.0  # the idle clock, as such runners recorded it


@pytest.mark.parametrize(("batches", "energy"), [(2, False), (ENERGY_MIN_UPDATES * 3, True)])
def test_energy_only_where_the_counter_resolves_it(
    nvml: ScriptedNvml, batches: int, energy: bool
) -> None:
    sampler = NvmlSampler(0, clock=nvml.clock)
    poll(sampler, nvml, 1.0)  # the run's first second: the counter's steps are seen
    assert sampler.energy_resolution_s == pytest.approx(nvml.period_s)
    busy_s = 0.0
    for _ in range(batches):
        with sampler.window("a", timing=True):
            nvml.busy = True
            with sampler.busy(lambda: nvml.busy):
                poll(sampler, nvml, 0.05)
                busy_s += 0.05
            nvml.busy = False
        poll(sampler, nvml, 0.05)  # another backend's turn
    tele = sampler.take("a")
    assert tele.energy_resolution_s == pytest.approx(nvml.period_s)
    if not energy:
        assert tele.energy_j is None  # 0.1 s of windows: one step of a 0.1 s counter
    else:
        assert tele.energy_j is not None
        # the counter charges 300 W; within one step per window of the exact energy
        exact = 300.0 * busy_s
        assert abs(tele.energy_j - exact) <= 300.0 * nvml.period_s * math.sqrt(batches)


def test_energy_without_a_known_resolution_is_left_out(nvml: ScriptedNvml) -> None:
    sampler = NvmlSampler(0, clock=nvml.clock)
    with sampler.window("a", timing=True):
        nvml.now += 5.0
    tele = sampler.take("a")
    assert sampler.energy_resolution_s is None and tele.energy_j is None


# -- the clock floor ---------------------------------------------------------------------


def test_clock_floor_drops_low_batches() -> None:
    floor = ClockFloor(0.75, 1980.0)
    kept: list[float] = []
    kept += floor.admit([1.0, 1.1], 1900.0)
    kept += floor.admit([1.6, 1.7, 1.5], 1200.0)
    kept += floor.admit([1.0], None)  # no reading: nothing says it was slow
    samples, notes = floor.final(kept)
    assert samples == [1.0, 1.1, 1.0]
    assert notes and notes[0].startswith("clock floor: 3 samples in 1 batches under 1485 MHz")


def test_clock_floor_never_leaves_a_row_empty() -> None:
    floor = ClockFloor(0.9, 1980.0)
    kept = floor.admit([2.0, 2.1], 1000.0) + floor.admit([2.2], 1100.0)
    samples, notes = floor.final(kept)
    assert samples == [2.0, 2.1, 2.2]
    assert notes[0].startswith("low clock: every batch ran under 1782 MHz (lowest 1000 MHz)")


def test_clock_floor_off_keeps_everything() -> None:
    floor = ClockFloor()
    assert floor.admit([1.0], 10.0) == [1.0]
    assert floor.final([1.0]) == ([1.0], [])
    with pytest.raises(ValueError, match="clock floor"):
        ClockFloor(1.5, 1980.0)


def test_sampler_without_nvml_has_a_quiet_busy_block(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = NvmlSampler.unavailable("not a CUDA run")
    with contextlib.ExitStack() as stack:
        stack.enter_context(sampler.window("a", timing=True))
        stack.enter_context(sampler.busy(lambda: True))
    assert sampler.take("a").source == "unavailable: not a CUDA run"
    assert sampler.energy_resolution_s is None
