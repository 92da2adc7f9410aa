from __future__ import annotations

import numpy as np
import pytest

from invbench.core.stats import StopPolicy, StopReason, median_ci, summarize, warmup_calls


def test_summary_values() -> None:
    s = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.n, s.median, s.min, s.mean) == (5, 3.0, 1.0, 3.0)
    assert s.p20 == pytest.approx(1.8) and s.p80 == pytest.approx(4.2)
    with pytest.raises(ValueError):
        summarize([])


def test_median_ci_covers_true_median() -> None:
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(400):
        a = np.sort(rng.normal(10.0, 1.0, 41))
        lo, hi = median_ci(a)
        covered += lo <= 10.0 <= hi
    assert 0.92 <= covered / 400 <= 0.995  # nominal 95 %


def test_policy_stops_on_converged_noise() -> None:
    rng = np.random.default_rng(1)
    policy = StopPolicy(min_samples=10, min_time_s=0.01, max_time_s=10, target_rel_ci=0.01)
    samples: list[float] = []
    reason = None
    while reason is None:
        samples.append(float(rng.normal(1.0, 0.01)))  # 1 ms +- 1 %
        reason = policy.decide(samples)
    assert reason is StopReason.CONVERGED
    assert 10 <= len(samples) < 200


def test_policy_hits_time_cap_on_heavy_noise() -> None:
    rng = np.random.default_rng(2)
    policy = StopPolicy(min_samples=10, min_time_s=0.01, max_time_s=0.2, target_rel_ci=0.001)
    samples: list[float] = []
    reason = None
    while reason is None:
        samples.append(float(rng.lognormal(0.0, 0.5)))
        reason = policy.decide(samples)
    assert reason is StopReason.TIME_CAP
    assert sum(samples) >= 200


def test_policy_fixed_and_minimums() -> None:
    assert StopPolicy(samples=3).decide([1.0, 1.0]) is None
    assert StopPolicy(samples=3).decide([1.0, 1.0, 1.0]) is StopReason.FIXED
    # identical samples converge only after the minimum count and time
    p = StopPolicy(min_samples=10, min_time_s=0.05, max_time_s=10)
    assert p.decide([1.0] * 9) is None
    assert p.decide([1.0] * 10) is None  # 10 ms < 50 ms
    assert p.decide([1.0] * 50) is StopReason.CONVERGED


def test_warmup_grows_with_kernel_length() -> None:
    assert warmup_calls(0.01, 25) == 2500
    assert warmup_calls(100.0, 25) == 3
