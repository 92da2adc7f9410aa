"""Sampling, statistics, stopping, telemetry aggregation and health warnings, on the CPU."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from invbench.backends.registry import Registry, builtin_registry
from invbench.core.choices import CacheMode
from invbench.core.spec import Dtype, Mode, Status
from invbench.core.stats import StopPolicy, StopReason, summarize, warmup_calls
from invbench.measure import telemetry
from invbench.measure.ceilings import copy_gbps, measure_ceilings
from invbench.measure.health import row_warnings, split_warnings
from invbench.measure.telemetry import NvmlSampler, RowTelemetry, other_processes
from invbench.measure.timing import CpuTimer
from invbench.running.bench import RunRequest, plan_run
from invbench.running.engine import Engine
from invbench.running.plan import RunPlan
from invbench.storage.results import ResultRow, row_from_record, rows_frame
from tests.measure_backends import TINY, FaultBackend, SpinBackend, StreamBackend, StreamClosure

CPU = torch.device("cpu")


class Sink:
    def __init__(self) -> None:
        self.rows: list[ResultRow] = []
        self.samples: list[list[float]] = []

    def add(self, row: ResultRow, samples_ms: Sequence[float] = ()) -> None:
        self.rows.append(row)
        self.samples.append(list(samples_ms))


class FakeTimer:
    """Returns each closure's synthetic durations and advances a fake wall clock by them."""

    cache_mode = CacheMode.HOT
    method = "fake"
    last_hidden = False

    def __init__(self, overhead_ms: float = 0.0) -> None:
        self.now_s = 0.0
        self.overhead_ms = overhead_ms  # wall time per sample that is not in the sample
        self.batches: list[tuple[str, int]] = []

    resolution_ms = 0.0
    busy = None
    last_host_ms: list[float] = []  # noqa: RUF012

    def sample(
        self, fn: Callable[[], object], n: int, hide_launch: bool = False, gate: object = None
    ) -> list[float]:
        assert isinstance(fn, StreamClosure)
        out = [fn.draw() for _ in range(n)]
        self.batches.append((fn.name, n))
        self.now_s += (sum(out) + n * self.overhead_ms) / 1e3
        return out

    def synchronize(self) -> None:
        return None

    def clock(self) -> float:
        return self.now_s


def stream(kind: str, seed: int = 0) -> Callable[[], float]:
    """Synthetic sample streams (ms) around a true median of 1 ms."""
    rng = np.random.default_rng(seed)
    count = [0]

    def draw() -> float:
        count[0] += 1
        if kind == "quiet":
            return float(rng.lognormal(0.0, 0.01))
        if kind == "noisy":
            return float(rng.lognormal(0.0, 0.3))
        if kind == "bimodal":
            return float(rng.choice([1.0, 2.0]) * rng.lognormal(0.0, 0.002))
        if kind == "drift":  # 0.2% slower with every sample, plus a little noise
            return float((1.0 + 0.002 * count[0]) * rng.lognormal(0.0, 0.002))
        if kind == "outliers":  # 5% of samples ten times slower
            slow = rng.random() < 0.05
            return float((10.0 if slow else 1.0) * rng.lognormal(0.0, 0.005))
        raise ValueError(kind)

    return draw


def run_policy(policy: StopPolicy, draw: Callable[[], float]) -> tuple[StopReason, list[float]]:
    samples: list[float] = []
    while True:
        samples.append(draw())
        reason = policy.decide(samples)
        if reason is not None:
            return reason, samples


POLICY = StopPolicy(min_samples=10, min_time_s=0.05, max_time_s=1.0, target_rel_ci=0.01)


# -- statistics and the stopping rule on synthetic streams -------------------------------


def test_median_ci_covers_the_true_median_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(1)
    true_median = 1.0  # lognormal(0, s) has median exp(0)
    hits = 0
    reps = 1000
    for _ in range(reps):
        s = summarize(rng.lognormal(0.0, 0.5, size=40).tolist())
        hits += s.ci_low <= true_median <= s.ci_high
    assert 0.92 <= hits / reps <= 0.995


def test_quiet_stream_converges_after_the_minimums() -> None:
    reason, samples = run_policy(POLICY, stream("quiet"))
    assert reason is StopReason.CONVERGED
    assert len(samples) >= POLICY.min_samples
    assert sum(samples) / 1e3 >= POLICY.min_time_s
    s = summarize(samples)
    assert s.rel_ci_half_width <= POLICY.target_rel_ci
    assert abs(s.median - 1.0) < 0.01


def test_minimum_time_holds_even_when_the_ci_is_already_tight() -> None:
    policy = StopPolicy(min_samples=10, min_time_s=0.05, max_time_s=10.0, target_rel_ci=0.01)
    tiny = [0.001] * 1000  # 1 us each: 1 ms in all, far from 50 ms
    assert policy.decide(tiny) is None
    assert policy.decide([0.001] * 60_000) is StopReason.CONVERGED


def test_minimum_samples_hold_even_for_long_samples() -> None:
    assert POLICY.decide([100.0] * 9) is None  # 0.9 s measured but only 9 samples
    assert POLICY.decide([100.0] * 10) is StopReason.CONVERGED


@pytest.mark.parametrize("kind", ["noisy", "bimodal", "drift"])
def test_unsettled_streams_stop_at_the_time_cap(kind: str) -> None:
    reason, samples = run_policy(POLICY, stream(kind))
    assert reason is StopReason.TIME_CAP
    assert sum(samples) / 1e3 >= POLICY.max_time_s
    assert sum(samples[:-1]) / 1e3 < POLICY.max_time_s  # stopped at the first chance


def test_bimodal_stream_is_flagged_noisy() -> None:
    _, samples = run_policy(POLICY, stream("bimodal"))
    warnings = row_warnings(summarize(samples), RowTelemetry("x"), None, None)
    assert any(w.startswith("noisy") for w in warnings)


def test_outliers_move_the_mean_but_not_the_median() -> None:
    reason, samples = run_policy(POLICY, stream("outliers", seed=3))
    s = summarize(samples)
    assert reason is StopReason.CONVERGED
    assert abs(s.median - 1.0) < 0.01
    assert s.mean > 1.2  # the 10x outliers pull the mean up
    assert s.p80 < 1.05  # and most samples sit at the true value


def test_fixed_sample_count() -> None:
    policy = StopPolicy(samples=7)
    reason, samples = run_policy(policy, stream("noisy"))
    assert reason is StopReason.FIXED
    assert len(samples) == 7


def test_wall_time_caps_a_slow_sampling_loop() -> None:
    samples = [0.01, 0.02] * 10  # 0.3 ms measured, noisy: never converges
    assert POLICY.decide(samples, elapsed_s=0.5) is None
    assert POLICY.decide(samples, elapsed_s=POLICY.max_time_s) is StopReason.TIME_CAP


def test_warmup_is_sized_from_the_estimate() -> None:
    assert warmup_calls(0.01, 25.0) == 2500  # 25 ms of 10 us calls
    assert warmup_calls(1.0, 25.0) == 25
    assert warmup_calls(100.0, 25.0) == 3  # long kernels: three calls' worth, not 1
    assert warmup_calls(100.0, 25.0) * 100.0 > warmup_calls(1.0, 25.0) * 1.0


def test_cpu_timer_uses_the_injected_clock() -> None:
    ticks = iter(range(0, 10_000_000, 1_500_000))  # every read advances 1.5 ms
    timer = CpuTimer(clock=lambda: next(ticks))
    assert timer.sample(lambda: None, 3) == [1.5, 1.5, 1.5]


# -- the runner with a fake timer and clock ----------------------------------------------


def fake_run(
    streams: dict[str, str], policy: StopPolicy = POLICY
) -> tuple[list[ResultRow], FakeTimer]:
    registry = Registry()
    for name, kind in streams.items():
        registry.register(StreamBackend(name, stream(kind, seed=len(name))))
    plan = RunPlan(
        cases=(TINY,),
        backends=tuple(streams),
        dtypes=(Dtype.FLOAT32,),
        modes=(Mode.FWD,),
        device=CPU,
        policy=policy,
        warmup_ms=5.0,
    )
    timer = FakeTimer(overhead_ms=0.2)
    sink = Sink()
    Engine(plan, registry, sink, timer=timer, wall_clock=timer.clock).run()
    return sink.rows, timer


def test_runner_interleaves_rounds_and_records_each_stop_reason() -> None:
    rows, timer = fake_run({"a": "quiet", "b": "noisy", "c": "bimodal"})
    by_name = {r.backend: r for r in rows}
    assert by_name["a"].stop_reason == StopReason.CONVERGED.value
    assert by_name["b"].stop_reason == StopReason.TIME_CAP.value
    assert by_name["c"].stop_reason == StopReason.TIME_CAP.value
    timed = [name for name, _ in timer.batches[6:]]  # after probe + warm-up of each
    assert timed[:6] == ["a", "b", "c", "c", "b", "a"]
    for r in rows:
        assert r.status == Status.OK.value
        assert r.n_samples >= POLICY.min_samples
        assert r.median_ms is not None and r.ci_low_ms <= r.median_ms <= r.ci_high_ms
        assert r.launch_hidden is False and r.cache_mode == "hot"
        assert r.telemetry.startswith("unavailable")
    assert "noisy" in by_name["c"].warnings
    assert "unconverged" in by_name["b"].warnings


def test_runner_time_cap_counts_wall_time_not_only_samples() -> None:
    # each sample: 1 ms measured, 0.2 ms overhead; the cap must trigger on the wall clock
    rows, timer = fake_run({"a": "noisy"})
    (row,) = rows
    assert row.mean_ms is not None
    measured_s = row.n_samples * row.mean_ms / 1e3
    assert row.stop_reason == StopReason.TIME_CAP.value
    assert measured_s < POLICY.max_time_s <= timer.now_s


def test_runner_fixed_samples() -> None:
    rows, _ = fake_run({"a": "noisy", "b": "quiet"}, StopPolicy(samples=23))
    assert [r.n_samples for r in rows] == [23, 23]
    assert {r.stop_reason for r in rows} == {StopReason.FIXED.value}


# -- a workload of known duration, timed for real ----------------------------------------


def test_busy_wait_is_measured_within_3_percent() -> None:
    registry = Registry()
    long = registry.register(SpinBackend("spin3", ms=3.0, first_call_ms=60.0))
    short = registry.register(SpinBackend("spin1", ms=1.0))
    plan = RunPlan(
        cases=(TINY,),
        backends=("spin3", "spin1"),
        dtypes=(Dtype.FLOAT32,),
        modes=(Mode.FWD,),
        device=CPU,
        policy=StopPolicy(min_samples=10, min_time_s=0.05, max_time_s=1.5, target_rel_ci=0.01),
        warmup_ms=10.0,
    )
    sink = Sink()
    Engine(plan, registry, sink).run()
    rows = {r.backend: r for r in sink.rows}
    for backend, target in ((long, 3.0), (short, 1.0)):
        r = rows[backend.name]
        assert r.status == "ok", r.reason
        assert r.min_ms is not None and r.median_ms is not None
        # A spin never ends early, and its fastest call is the target itself. On a busy
        # machine a preempted call really does take longer, so the median is compared
        # with the median of the very calls timed, as each measured its own duration.
        assert target <= r.min_ms < target * 1.03, (backend.name, r.min_ms)
        own = float(np.median(backend.durations_ms[-r.n_samples :]))
        assert abs(r.median_ms - own) / own < 0.03, (backend.name, r.median_ms, own)
    # the first call's extra 60 ms is compile time, never a sample
    assert rows["spin3"].compile_ms is not None and rows["spin3"].compile_ms >= 60.0
    assert rows["spin1"].compile_ms is not None and rows["spin1"].compile_ms < 60.0
    assert max(s for s in sink.samples[0]) < 60.0
    # warm-up sized from the estimate: calls 3-5 are the probe (after the check and the
    # peak-memory call), and the warm-up is what warmup_calls() makes of their median
    for backend in (long, short):
        warm = backend.calls - 5 - rows[backend.name].n_samples
        estimate = float(np.median(backend.durations_ms[2:5]))
        assert abs(warm - warmup_calls(estimate, plan.warmup_ms)) <= 1, (backend.name, warm)
        assert warm * estimate >= plan.warmup_ms * 0.9


def test_cpu_rows_record_hot_whatever_cache_mode_was_asked() -> None:
    registry = Registry()
    registry.register(SpinBackend("spin", ms=0.1))
    plan = RunPlan(
        cases=(TINY,),
        backends=("spin",),
        dtypes=(Dtype.FLOAT32,),
        modes=(Mode.FWD,),
        device=CPU,
        policy=StopPolicy(samples=5),
        warmup_ms=1.0,
        cache_mode=CacheMode.GRAPH,
    )
    sink = Sink()
    Engine(plan, registry, sink).run()
    (row,) = sink.rows
    assert (row.cache_mode, row.calls_per_sample, row.launch_hidden) == ("hot", 1, False)
    assert row.timer == "perf_counter" and row.n_samples == 5


# -- faults without isolation ------------------------------------------------------------


@pytest.mark.parametrize(("fault", "status"), [("oom", "oom"), ("cuda-error", "crashed")])
def test_fault_without_isolation_becomes_a_row(fault: str, status: str) -> None:
    registry = Registry()
    registry.register(FaultBackend("bad", fault))
    registry.register(SpinBackend("good", ms=0.2))
    plan = RunPlan(
        cases=(TINY,),
        backends=("bad", "good"),
        dtypes=(Dtype.FLOAT32,),
        modes=(Mode.FWD,),
        device=CPU,
        policy=StopPolicy(samples=5),
        warmup_ms=1.0,
    )
    sink = Sink()
    Engine(plan, registry, sink).run()
    rows = {r.backend: r for r in sink.rows}
    assert rows["bad"].status == status
    assert rows["bad"].reason
    assert rows["good"].status == "ok"


# -- telemetry, health and ceilings ------------------------------------------------------


class FakeNvml:
    """Just enough of pynvml for the sampler, with scripted readings."""

    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, sm_mhz: float, reasons: int) -> None:
        self.sm_mhz = sm_mhz
        self.reasons = reasons
        self.energy_mj = 0.0

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        return "h"

    def nvmlDeviceGetMaxClockInfo(self, h: str, kind: int) -> int:
        return 2000

    def nvmlDeviceGetClockInfo(self, h: str, kind: int) -> float:
        return self.sm_mhz if kind == 1 else 1600

    def nvmlDeviceGetTemperature(self, h: str, sensor: int) -> int:
        return 70

    def nvmlDeviceGetPowerUsage(self, h: str) -> int:
        return 300_000

    def nvmlDeviceGetUtilizationRates(self, h: str) -> Any:
        return SimpleNamespace(gpu=97)

    def nvmlDeviceGetMemoryInfo(self, h: str) -> Any:
        return SimpleNamespace(used=3 << 30)

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: str) -> int:
        return self.reasons

    def nvmlDeviceGetTotalEnergyConsumption(self, h: str) -> float:
        self.energy_mj += 1500.0  # 1.5 J between consecutive reads
        return self.energy_mj

    def nvmlDeviceGetComputeRunningProcesses(self, h: str) -> list[Any]:
        return [
            SimpleNamespace(pid=os.getpid(), usedGpuMemory=1 << 20),
            SimpleNamespace(pid=999_999, usedGpuMemory=1 << 20),
        ]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: str) -> list[Any]:
        return []

    def nvmlSystemGetProcessName(self, pid: int) -> bytes:
        return b"other"


@pytest.mark.parametrize(
    ("sm_mhz", "reasons", "throttled"),
    [(1980.0, 0x1, False), (1200.0, 0x4 | 0x20, True), (1900.0, 0x10, False)],
)
def test_sampler_summarises_readings_and_detects_throttling(
    monkeypatch: pytest.MonkeyPatch, sm_mhz: float, reasons: int, throttled: bool
) -> None:
    fake = FakeNvml(sm_mhz, reasons)
    monkeypatch.setattr(telemetry, "_nvml", lambda: fake)
    sampler = NvmlSampler(0, interval_s=0.005)
    assert sampler.available and sampler.max_sm_clock_mhz == 2000
    sampler.start()
    with sampler.window("a", timing=True), sampler.busy(lambda: True):
        # until the thread has polled a few times (about 50 ms unloaded), not a fixed
        # sleep that a busy machine can deschedule it through. The window's own reading
        # and busy()'s come without an energy poll, so four readings can hold only two
        # counter steps: wait for the three steps a period needs as well.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            len(sampler._readings.get("a", [])) < 4 or sampler.energy_resolution_s is None
        ):
            time.sleep(0.01)
    sampler.stop()
    tele = sampler.take("a")
    assert tele.source == "nvml" and tele.n_readings >= 2 and tele.busy_readings >= 2
    assert tele.sm_clock_mhz == sm_mhz and tele.power_w_mean == 300.0
    assert sampler.last_batch_sm_mhz == sm_mhz
    # the counter steps at every read here, so its period is about the 5 ms poll interval
    # (whether 50 ms of window span 10 such steps depends on the machine's load)
    assert tele.energy_resolution_s is not None and tele.energy_resolution_s < 0.05
    assert tele.throttled is throttled
    assert tele.nvml_mem_peak_bytes == 3 << 30
    names = tele.throttle_reasons.split(",") if tele.throttle_reasons else []
    assert "sw_power_cap" in names if reasons & 0x4 else "sw_power_cap" not in names
    assert sampler.take("a").n_readings == 0  # taken once
    others = sampler.other_processes()
    assert others == 1
    warnings = row_warnings(None, tele, sampler.max_sm_clock_mhz, others)
    assert any(w.startswith("throttled") for w in warnings) is throttled
    assert any(w.startswith("low clock") for w in warnings) is (sm_mhz < 1500)
    assert any(w.startswith("shared GPU") for w in warnings)


def test_without_nvml_rows_record_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> Any:
        raise RuntimeError("NVML Shared Library Not Found")

    monkeypatch.setattr(telemetry, "_nvml", broken)
    sampler = NvmlSampler(0)
    assert not sampler.available
    assert sampler.reason is not None and "Not Found" in sampler.reason
    with sampler.window("a", timing=True):
        pass
    assert sampler.take("a").source == f"unavailable: {sampler.reason}"
    assert sampler.other_processes() is None


def test_other_processes_inside_and_outside_a_pid_namespace() -> None:
    procs = [{"pid": 10}, {"pid": 11}, {"pid": 12}]
    assert other_processes(procs, [11])[0] == 2  # our id is visible: the others are known
    assert other_processes(procs, [99])[0] == 2  # ids from another namespace: subtract ours
    assert other_processes(procs[:1], [98, 99])[0] == 0
    assert other_processes([], [99])[0] == 0


def test_plan_applies_sampling_options() -> None:
    request = RunRequest(
        suite="smoke", device="cpu", samples=None, target_rel_ci=0.2, max_time_s=0.7
    )
    _, plan = plan_run(request, builtin_registry())
    assert plan.policy.target_rel_ci == 0.2 and plan.policy.max_time_s == 0.7
    _, fixed = plan_run(RunRequest(suite="smoke", device="cpu", samples=9), builtin_registry())
    assert fixed.policy.samples == 9


def test_health_warnings_short_kernel_and_clean_row() -> None:
    short = summarize([0.003] * 20)
    assert any(w.startswith("short") for w in row_warnings(short, RowTelemetry("x"), None, 0))
    clean = summarize([1.0] * 20)
    assert row_warnings(clean, RowTelemetry("x"), None, 0, target_rel_ci=0.01) == []


def test_split_warning_when_the_parts_do_not_add_up_to_the_layer() -> None:
    whole = summarize([6.0, 6.1, 6.2, 6.1, 6.0])
    gen = summarize([0.9, 1.0, 1.1, 1.0, 1.0])
    assert split_warnings(whole, {"gen": gen, "agg": summarize([5.0, 5.1, 5.2, 5.1, 5.1])}) == []
    slow = summarize([10.5, 10.6, 10.7, 10.6, 10.5])  # aggregation alone slower than the layer
    (warning,) = split_warnings(whole, {"gen": gen, "agg": slow})
    assert warning.startswith("split: gen + agg is 1.90x the layer's median (11.6 ms against 6.1)")
    assert split_warnings(whole, {"agg": slow}) == []  # one part: nothing to add up
    # no spread at all: 5% of the layer's median is allowed (dispatch around the parts)
    flat = summarize([10.0] * 5)
    assert split_warnings(flat, {"gen": summarize([3.0] * 5), "agg": summarize([7.4] * 5)}) == []
    assert split_warnings(flat, {"gen": summarize([3.0] * 5), "agg": summarize([7.6] * 5)})


def test_cpu_ceilings_are_measured_quickly() -> None:
    t0 = time.perf_counter()
    ceilings = measure_ceilings(CPU)
    assert time.perf_counter() - t0 < 5.0
    gbps = copy_gbps(ceilings)
    assert gbps is not None and gbps > 0
    assert ceilings["copy"]["bytes_moved"] == 2 * (64 << 20)
    assert ceilings["matmul"][0]["tflops"] > 0


def test_rows_survive_a_parquet_round_trip(tmp_path: Any) -> None:
    row = ResultRow(
        suite="s", case="c", backend="b", kind="baseline", device="cpu", dtype="float32",
        mode="fwd", batch=1, channels=2, height=3, width=3, kernel_size=3, stride=1,
        dilation=1, groups=1, padding=1, out_height=3, out_width=3, status="oom",
        reason="x", peak_mem_bytes=None, throttled=None, launch_hidden=True,
    )  # fmt: skip
    frame = rows_frame([row, row])
    frame.to_parquet(tmp_path / "r.parquet")
    import pandas as pd

    back = [row_from_record(r) for r in pd.read_parquet(tmp_path / "r.parquet").to_dict("records")]
    assert back[0] == row
    assert asdict(back[1]) == asdict(row)


def test_rows_say_how_the_host_ran_them_and_what_their_samples_show() -> None:
    rows, _ = fake_run({"b": "bimodal", "dr": "drift", "q": "quiet"})
    by = {r.backend: r for r in rows}
    for r in rows:
        assert r.threads == torch.get_num_threads()
        if Path("/proc/loadavg").exists():
            assert r.load_avg is not None and r.load_avg >= 0
    assert "bimodal: " in by["b"].warnings and "bimodal" not in by["q"].warnings
    assert "drifting: samples rose" in by["dr"].warnings
    assert "drifting" not in by["q"].warnings
