"""Noise diagnostics of one row's samples: drift, two modes, the spread of runs."""

from __future__ import annotations

import numpy as np

from invbench.core.noise import drift, run_spread, two_modes


def test_one_state_is_not_two_modes_nor_a_drift() -> None:
    rng = np.random.default_rng(0)
    flagged_modes = flagged_drift = 0
    for _ in range(100):
        lognormal = np.exp(rng.normal(0.0, 0.1, 300))
        skewed = 0.05 * (1 + rng.exponential(0.3, 300))  # preemptions: a long right tail
        flagged_modes += (two_modes(lognormal) is not None) + (two_modes(skewed) is not None)
        flagged_drift += (drift(lognormal) is not None) + (drift(skewed) is not None)
    assert flagged_modes == 0 and flagged_drift == 0


def test_a_fast_and_a_slow_state_are_two_modes() -> None:
    rng = np.random.default_rng(1)
    slow = rng.random(300) < 0.3
    samples = np.where(slow, 0.149, 0.043) * np.exp(rng.normal(0.0, 0.05, 300))
    modes = two_modes(samples)
    assert modes is not None
    assert abs(modes.fast_ms - 0.043) < 0.004 and abs(modes.slow_ms - 0.149) < 0.01
    assert abs(modes.slow_share - slow.mean()) < 0.02
    assert modes.phrase().startswith("bimodal: ")
    assert two_modes(samples[:20]) is None  # too few samples to say


def test_a_trend_with_time_is_a_drift() -> None:
    rng = np.random.default_rng(2)
    rising = np.linspace(1.0, 1.3, 200) * np.exp(rng.normal(0.0, 0.03, 200))
    found = drift(rising)
    assert found is not None and found.change > 0.15 and found.tau > 0
    assert "rose" in found.phrase()
    assert drift(rising[::-1]) is not None and "fell" in drift(rising[::-1]).phrase()  # type: ignore[union-attr]
    # a significant but immaterial trend (under 5%) is not reported
    assert drift(np.linspace(1.0, 1.02, 500)) is None


def test_run_spread_is_the_sd_of_log_medians() -> None:
    assert run_spread([1.0]) is None
    assert abs(run_spread([1.0, np.e]) - np.std([0.0, 1.0], ddof=1)) < 1e-12  # type: ignore[operator]
