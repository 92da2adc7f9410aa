"""Measurement checks that need a CUDA device (skipped without one)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
import torch

from invbench.backends.base import Closure, Workload
from invbench.backends.registry import Registry
from invbench.core.choices import CacheMode
from invbench.core.spec import Dtype, Mode
from invbench.core.stats import StopPolicy
from invbench.measure.ceilings import copy_gbps, measure_ceilings
from invbench.measure.telemetry import THROTTLE_MASK, nvml_index, reason_names
from invbench.measure.timing import l2_cache_bytes
from invbench.running.engine import Engine, default_sampler
from invbench.running.plan import RunPlan
from invbench.storage.results import ResultRow
from tests.measure_backends import TINY, _TestBackend

pytestmark = pytest.mark.gpu

POLICY = StopPolicy(min_samples=20, min_time_s=0.2, max_time_s=3.0, target_rel_ci=0.005)


class Sink:
    def __init__(self) -> None:
        self.rows: list[ResultRow] = []

    def add(self, row: ResultRow, samples_ms: Sequence[float] = ()) -> None:
        self.rows.append(row)


class SleepBackend(_TestBackend):
    """torch.cuda._sleep: a kernel that spins for a known number of SM clock cycles."""

    def __init__(self, name: str, cycles: int) -> None:
        super().__init__(name)
        self.cycles = cycles

    def build(self, work: Workload) -> Closure:
        out, cycles = work.x.detach(), self.cycles

        def fn() -> tuple[torch.Tensor, ...]:
            torch.cuda._sleep(cycles)
            return (out,)

        return fn


class CopyBackend(_TestBackend):
    """dst.copy_(src) with src + dst filling half of L2."""

    def build(self, work: Workload) -> Closure:
        n = l2_cache_bytes(work.device) // 4 // 4
        src = torch.randn(n, device=work.device)
        dst = torch.empty_like(src)

        def fn() -> tuple[torch.Tensor, ...]:
            return (dst.copy_(src),)

        return fn


class SyncingBackend(_TestBackend):
    """Synchronises inside the closure (.item()), which CUDA-graph capture forbids."""

    def build(self, work: Workload) -> Closure:
        x = work.x.detach()

        def fn() -> tuple[torch.Tensor, ...]:
            y = x * 2
            y.sum().item()
            return (y,)

        return fn


def run(backends: list[_TestBackend], cache: CacheMode, policy: StopPolicy = POLICY) -> dict:
    registry = Registry()
    for b in backends:
        registry.register(b)
    plan = RunPlan(
        cases=(TINY,),
        backends=tuple(b.name for b in backends),
        dtypes=(Dtype.FLOAT32,),
        modes=(Mode.FWD,),
        device=torch.device("cuda"),
        policy=policy,
        warmup_ms=25.0,
        cache_mode=cache,
    )
    sink = Sink()
    Engine(plan, registry, sink).run()
    return {r.backend: r for r in sink.rows}


def _nvml_or_skip() -> None:
    sampler = default_sampler(torch.device("cuda"))
    if not sampler.available:
        pytest.skip(f"NVML: {sampler.reason}")


def test_sleep_of_known_cycles_is_measured_within_1_percent() -> None:
    _nvml_or_skip()
    cycles = 2_000_000  # about 1 ms at 2 GHz
    row = run([SleepBackend("sleep", cycles)], CacheMode.HOT)["sleep"]
    assert row.status == "ok", row.reason
    assert row.sm_clock_mhz is not None and row.sm_clock_mhz > 0
    expected_ms = cycles / (row.sm_clock_mhz * 1e3)
    assert row.median_ms is not None
    assert abs(row.median_ms - expected_ms) / expected_ms < 0.01, (row.median_ms, expected_ms)


def test_every_gpu_row_is_timed_behind_a_blocking_kernel_with_its_host_time() -> None:
    rows = run([SleepBackend("short", 5_000), SleepBackend("long", 2_000_000)], CacheMode.COLD)
    for row in rows.values():
        assert row.status == "ok", row.reason
        assert row.launch_hidden is True, row.warnings
        assert row.host_ms is not None and row.host_ms > 0
        assert row.launch_reruns is not None
        assert row.tf32 is False and row.cudnn_benchmark is True
    assert rows["short"].median_ms is not None and rows["long"].median_ms is not None
    assert rows["short"].median_ms < rows["long"].median_ms
    # a 1 ms kernel takes a few us of the host's time to launch: not launch-bound
    assert rows["long"].host_ms < rows["long"].median_ms  # type: ignore[operator]


def test_cold_l2_is_slower_than_hot_on_an_l2_sized_copy() -> None:
    cold = run([CopyBackend("copy")], CacheMode.COLD)["copy"]
    hot = run([CopyBackend("copy")], CacheMode.HOT)["copy"]
    assert (cold.cache_mode, hot.cache_mode) == ("cold", "hot")
    assert cold.median_ms is not None and hot.median_ms is not None
    assert cold.median_ms > hot.median_ms, (cold.median_ms, hot.median_ms)


def test_graph_mode_replays_several_calls_and_falls_back_with_a_reason() -> None:
    rows = run([SleepBackend("short", 5_000), SyncingBackend("syncing")], CacheMode.GRAPH, POLICY)
    short, syncing = rows["short"], rows["syncing"]
    assert short.status == "ok" and short.cache_mode == "graph"
    assert short.calls_per_sample > 1
    assert syncing.status == "ok" and syncing.cache_mode == "hot"
    assert "graph capture failed" in syncing.warnings


def test_throttle_detection_reads_real_nvml_values() -> None:
    _nvml_or_skip()
    sampler = default_sampler(torch.device("cuda"))
    sampler.interval_s = 0.01
    sampler.start()
    with sampler.window("busy", timing=True):
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            torch.cuda._sleep(1_000_000)
            torch.cuda.synchronize()
    sampler.stop()
    tele = sampler.take("busy")
    assert tele.source == "nvml" and tele.n_readings >= 5
    assert tele.throttled is not None
    assert tele.sm_clock_mhz is not None and tele.sm_clock_mhz > 0
    if sampler.max_sm_clock_mhz:
        assert tele.sm_clock_mhz <= sampler.max_sm_clock_mhz * 1.01
    known = set(reason_names(0xFFFF))
    assert set(filter(None, tele.throttle_reasons.split(","))) <= known
    assert tele.nvml_mem_peak_bytes is not None and tele.nvml_mem_peak_bytes > 0
    # the sampler's reasons are NVML's: read both ways until two reads agree in time
    import pynvml

    handle = pynvml.nvmlDeviceGetHandleByIndex(sampler.index)
    direct = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or (
        pynvml.nvmlDeviceGetCurrentClocksThrottleReasons
    )
    agree = False
    for _ in range(5):
        ours = sampler.read().reasons
        theirs = int(direct(handle))
        assert ours is not None
        if ours & THROTTLE_MASK == theirs & THROTTLE_MASK:
            agree = True
            break
    assert agree


def test_nvml_index_matches_the_torch_device() -> None:
    _nvml_or_skip()
    import pynvml

    pynvml.nvmlInit()
    index = nvml_index(torch.device("cuda"))
    name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
    name = name.decode() if isinstance(name, bytes) else name
    assert name == torch.cuda.get_device_name()


def test_gpu_oom_without_isolation_is_a_row() -> None:
    class Hog(_TestBackend):
        def build(self, work: Workload) -> Closure:
            total = torch.cuda.get_device_properties(work.device).total_memory
            big = torch.empty(2 * total, dtype=torch.uint8, device=work.device)
            return lambda: (big,)

    row = run([Hog("hog")], CacheMode.COLD)["hog"]
    assert row.status == "oom", row.reason


def test_gpu_ceilings() -> None:
    ceilings = measure_ceilings(torch.device("cuda"))
    gbps = copy_gbps(ceilings)
    assert gbps is not None and gbps > 0
    assert all(m.get("tflops", 0) > 0 for m in ceilings["matmul"]), ceilings
