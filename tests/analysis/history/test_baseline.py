"""base_spread: the between-run spread of a row on a machine, for judging one run a side."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from invbench.analysis.history.baseline import base_spread
from invbench.analysis.history.store import HistoryStore

from .helpers import commit_name, row, write_run

KEY = {k: getattr(row(), k) for k in ("suite", "case", "backend", "device", "dtype", "mode",
       "batch", "channels", "height", "width", "kernel_size", "stride", "dilation", "groups",
       "padding")}  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> HistoryStore:
    """unfold: 5% run-to-run noise, 1.0 ms for commits 0-11, 2.0 ms from 12 to 23."""
    root = tmp_path_factory.mktemp("base")
    store = HistoryStore(root / "h")
    noise = np.random.default_rng(11).normal(0.0, 0.05, 24)
    for i in range(24):
        level = 1.0 if i < 12 else 2.0
        ms = {"unfold": level * math.exp(noise[i])}
        time = f"2026-01-01T00:{i:02d}:00+00:00"
        store.add(write_run(root / f"r{i}", commit_name(i), ms, time=time))
    return store


def machine(store: HistoryStore) -> str:
    return str(store.machines()["machine_id"].iloc[0])


def test_the_spread_is_the_current_levels_run_to_run_noise(store: HistoryStore) -> None:
    spread = base_spread(store, KEY, machine(store))
    assert spread.enough and spread.reason == ""
    assert spread.commits == tuple(commit_name(i) for i in range(12, 24))  # not the old level
    assert spread.median_ms == pytest.approx(2.0, rel=0.05)
    assert 0.02 < spread.rel_sd < 0.1  # the 5% noise put in, estimated from 12 runs
    z = spread.z(2.0 * 1.3)
    assert z is not None and z > 3  # a 30% slower run stands out of 5% noise


def test_upto_commit_and_lookback_choose_the_runs(store: HistoryStore) -> None:
    spread = base_spread(store, KEY, machine(store), upto_commit=commit_name(9), lookback=4)
    assert spread.commits == tuple(commit_name(i) for i in range(6, 10))
    assert spread.median_ms == pytest.approx(1.0, rel=0.06)


def test_too_little_history_says_so(store: HistoryStore, tmp_path: Path) -> None:
    one = HistoryStore(tmp_path / "h")
    one.add(write_run(tmp_path / "r", commit_name(1), {"unfold": 1.0}))
    spread = base_spread(one, KEY, machine(one))
    assert not spread.enough and spread.z(2.0) is None
    assert "1 run of this row" in spread.reason and "at least 2" in spread.reason
    other = base_spread(store, {**KEY, "backend": "nope"}, machine(store))
    assert not other.enough and "no run of this row" in other.reason
    elsewhere = base_spread(store, KEY, "ffffffffffff")
    assert not elsewhere.enough and "on this machine" in elsewhere.reason
