"""Change points: a known step found at its commit, none in flat noise, none across machines."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from invbench.analysis.history.changepoints import Policy, analyse, find_steps
from invbench.analysis.history.series import Point, Series, build_series
from invbench.analysis.history.store import HistoryStore

from .helpers import commit_name, machine_noise_sigma, machine_residuals, write_run

KEY = {"suite": "smoke", "case": "k3-g2", "backend": "unfold", "dtype": "float32", "mode": "fwd"}


def synthetic(runs: np.ndarray) -> Series:
    """A series with one point per row of runs (log deviations of each run's median)."""
    points = tuple(
        Point(commit_name(i), f"2026-01-01T00:{i:02d}:00", f"commit {i}", tuple(np.exp(r)), ())
        for i, r in enumerate(runs)
    )
    return Series("s", KEY, "m", "machine", points)


@pytest.mark.parametrize("seed", range(10))
def test_a_ten_percent_step_is_found_at_its_commit_under_this_machines_noise(seed: int) -> None:
    # This machine's between-run noise (fixture: four smoke runs of one commit) is ~30%:
    # far above a 10% step. A commit's point is the median of its runs, so the test takes
    # as many runs per commit as bring a point's noise to 1.5% (median: 1.25 sigma/sqrt k).
    sigma = machine_noise_sigma()
    assert 0.01 < sigma < 1.0
    runs_per_commit = math.ceil((1.25 * sigma / 0.015) ** 2)
    rng = np.random.default_rng(seed)
    runs = rng.normal(0.0, sigma, size=(30, runs_per_commit))
    runs[17:] += math.log(1.10)  # commit 17 is 10% slower, and so is every later one
    analysis = analyse(synthetic(runs))
    assert [s.index for s in analysis.steps] == [17]
    step = analysis.steps[0]
    assert step.good.commit == commit_name(16) and step.bad.commit == commit_name(17)
    assert step.regression and 0.07 < step.size < 0.13
    assert step.confidence > 0.999


@pytest.mark.parametrize("seed", range(20))
def test_flat_noisy_history_of_30_runs_has_no_change_point(seed: int) -> None:
    rng = np.random.default_rng(seed)
    real = rng.choice(machine_residuals(), size=(30, 1))  # this machine's noise, tails and all
    assert analyse(synthetic(real)).steps == ()
    gaussian = rng.normal(0.0, machine_noise_sigma(), size=(30, 1))
    assert analyse(synthetic(gaussian)).steps == ()


def test_an_improvement_is_a_step_but_not_a_regression() -> None:
    runs = np.random.default_rng(1).normal(0.0, 0.01, size=(26, 1))
    runs[13:] += math.log(0.8)
    analysis = analyse(synthetic(runs))
    assert [s.index for s in analysis.steps] == [13]
    assert analysis.regressions == () and analysis.steps[0].size == pytest.approx(-0.2, abs=0.03)


def test_small_steps_below_the_threshold_and_short_series_are_not_reported() -> None:
    runs = np.random.default_rng(2).normal(0.0, 0.002, size=(30, 1))
    runs[15:] += math.log(1.03)  # clear, but under the 5% threshold
    assert find_steps(runs[:, 0], Policy()) == []
    assert find_steps(runs[:, 0], Policy(threshold=0.02)) == [15]
    assert find_steps(runs[:5, 0], Policy()) == []


def test_steps_and_series_through_the_store_and_a_machine_change(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h")
    rng = np.random.default_rng(3)
    for i in range(30):
        level = 1.0 if i < 12 else 1.25  # unfold: 25% slower from commit 12
        other = {"cpu": "Other CPU"} if i >= 24 else {}  # a new machine from commit 24
        medians = {
            "unfold": level * math.exp(rng.normal(0, 0.01)),
            "conv3x3": 2.0 * math.exp(rng.normal(0, 0.01)) * (1.5 if other else 1.0),
        }
        time = f"2026-01-01T00:{i:02d}:00+00:00"
        store.add(write_run(tmp_path / f"r{i}", commit_name(i), medians, time=time, meta=other))
    series = build_series(store.rows(ok_only=True))
    by = {(s.key["backend"], s.machine.split(" x")[0]): s for s in series}
    assert sorted(by) == [
        ("conv3x3", "Other CPU"), ("conv3x3", "Test CPU 9000"),
        ("unfold", "Other CPU"), ("unfold", "Test CPU 9000"),
    ]  # fmt: skip
    assert len(by["conv3x3", "Test CPU 9000"].points) == 24
    # conv3x3 is 1.5x slower on the other machine: a new series, never a change point
    assert all(analyse(s).steps == () for s in series if s.key["backend"] == "conv3x3")
    steps = analyse(by["unfold", "Test CPU 9000"]).steps
    assert [(s.good.commit, s.bad.commit) for s in steps] == [(commit_name(11), commit_name(12))]
