"""TF32 policy, the timer-resolution floor of the stopping rule, and its health warnings."""

from __future__ import annotations

import torch

from invbench.core.stats import StopPolicy, StopReason, summarize
from invbench.measure.health import row_warnings
from invbench.measure.precision import PrecisionPolicy, precision_fields, precision_policy
from invbench.measure.telemetry import RowTelemetry
from invbench.measure.timing import CUDA_EVENT_RESOLUTION_MS, CpuTimer, ci_floor_ms


def _flags() -> tuple[bool, bool, bool]:
    b = torch.backends
    return b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.benchmark


def test_tf32_is_off_for_the_run_unless_asked_and_restored_after() -> None:
    before = _flags()
    torch.backends.cudnn.allow_tf32 = True  # torch's own default
    try:
        with precision_policy(PrecisionPolicy()):
            assert _flags() == (False, False, True)
            assert precision_fields("float32", "cuda") == {"tf32": False, "cudnn_benchmark": True}
        with precision_policy(PrecisionPolicy(tf32=True, cudnn_benchmark=False)):
            assert _flags() == (True, True, False)
            assert precision_fields("float32", "cuda") == {"tf32": True, "cudnn_benchmark": False}
            # only float32 GPU rows can use TF32
            assert precision_fields("bfloat16", "cuda")["tf32"] is False
            assert precision_fields("float32", "cpu") == {"tf32": False, "cudnn_benchmark": False}
        assert torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before[:2]
        torch.backends.cudnn.benchmark = before[2]


POLICY = StopPolicy(min_samples=10, min_time_s=0.0, max_time_s=1.0, target_rel_ci=0.01)


def test_quantised_few_us_samples_do_not_converge_below_the_timer() -> None:
    ticks = [0.003] * 50 + [0.0035] * 10  # 3 us kernels on a 0.5 us timer: a zero-wide CI
    assert summarize(ticks).rel_ci_half_width == 0.0
    assert POLICY.decide(ticks) is StopReason.CONVERGED  # what the rule said before
    floor = ci_floor_ms(CUDA_EVENT_RESOLUTION_MS)
    assert floor == 0.00025
    assert POLICY.decide(ticks, floor_ms=floor) is StopReason.RESOLUTION
    # graph replays of 100 calls resolve each call 100 times finer
    assert POLICY.decide(ticks, floor_ms=ci_floor_ms(CUDA_EVENT_RESOLUTION_MS, 100)) is (
        StopReason.CONVERGED
    )


def test_a_wide_ci_keeps_sampling_under_the_floor() -> None:
    spread = [0.003, 0.004, 0.005, 0.006] * 5  # CI far wider than half a tick
    assert POLICY.decide(spread, floor_ms=0.00025) is None


def test_long_kernels_are_not_affected_by_the_floor() -> None:
    quiet = [1.0, 1.001, 0.999] * 10
    assert POLICY.decide(quiet, floor_ms=0.00025) is StopReason.CONVERGED


def test_cpu_timer_records_host_time_and_its_resolution() -> None:
    ticks = iter(range(0, 10_000_000, 1_000_000))
    timer = CpuTimer(clock=lambda: next(ticks))
    assert timer.sample(lambda: None, 2) == [1.0, 1.0] == timer.last_host_ms
    assert 0 < timer.resolution_ms < 0.001


def test_timer_bound_and_launch_bound_warnings() -> None:
    ticks = summarize([0.003] * 50 + [0.0035] * 10)
    warnings = row_warnings(ticks, RowTelemetry("x"), None, 0, target_rel_ci=0.01, floor_ms=0.00025)
    assert any(w.startswith("timer-bound: the timer resolves +/-0.25 us") for w in warnings)
    assert not any(w.startswith("unconverged") for w in warnings)
    quiet = summarize([0.05] * 20)
    launch = row_warnings(quiet, RowTelemetry("x"), None, 0, host_ms=0.08)
    assert launch == [
        "launch-bound: the host takes 80.0 us per call to enqueue 50.0 us of GPU work"
    ]
    assert row_warnings(quiet, RowTelemetry("x"), None, 0, host_ms=0.01) == []
