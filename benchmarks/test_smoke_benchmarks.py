"""pytest-benchmark tests of the smoke cases, built and timed by the harness's own pieces.

Run with `pytest benchmarks/ --benchmark-only` (not part of the default test run).
Each test builds the backend's closure exactly as `invbench run` does (same random
workload, same prepare step) and hands pytest-benchmark a target that calls it and
then synchronizes through the harness's timer, so GPU work is finished inside each
round. The harness's own timer (CUDA events on a GPU, perf_counter on the CPU) also
times the closure; its median goes into extra_info as invbench_median_ms.
"""

from __future__ import annotations

import statistics
from typing import Any

import pytest
import torch

from invbench.backends.registry import default_registry
from invbench.core.choices import CacheMode
from invbench.core.spec import DeviceKind, Dtype, Mode
from invbench.core.suites import find_suite
from invbench.measure.timing import make_timer
from invbench.running.levels.op import make_workload

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SUITE = find_suite("smoke")
SETTINGS = SUITE.settings(DeviceKind(DEVICE.type))
CASES = SUITE.with_batch(SETTINGS.batch).cases
REGISTRY = default_registry()
PARAMS = [
    pytest.param(case, backend, mode, id=f"{case.name}-{backend}-{mode.value}")
    for case in CASES
    for backend in REGISTRY.names()
    for mode in SETTINGS.modes
]


@pytest.mark.parametrize(("case", "backend_name", "mode"), PARAMS)
def test_smoke(benchmark: Any, case: Any, backend_name: str, mode: Mode) -> None:
    backend = REGISTRY.get(backend_name)
    dtype = Dtype.FLOAT32
    reason = backend.availability(DeviceKind(DEVICE.type), dtype)
    if reason is not None:
        pytest.skip(reason)
    work = make_workload(case, dtype, mode, DEVICE, SETTINGS.seed)
    fn = backend.build(work)
    timer = make_timer(DEVICE, CacheMode.HOT)
    fn()  # first call: compilation and autotuning stay out of the numbers
    timer.synchronize()

    def target() -> None:
        fn()
        timer.synchronize()

    benchmark.group = f"smoke/{case.name}/{dtype.value}/{mode.value}"
    benchmark.extra_info["invbench_timer"] = timer.method
    benchmark.extra_info["invbench_median_ms"] = statistics.median(timer.sample(fn, 20))
    benchmark.pedantic(target, rounds=30, warmup_rounds=3, iterations=1)
