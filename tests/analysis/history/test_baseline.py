"""base_spread: the between-run spread of a row on a machine, for judging one run a side."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
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


def test_compare_judges_single_runs_against_the_history(
    store: HistoryStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # one run a side: uncertain alone; with the base's history on this machine (5% noise
    # between runs) a 2x slower head stands out, and the same head does not
    from invbench.cli.app import main

    def one_run(name: str, ms: float) -> Path:
        out = write_run(tmp_path / name, commit_name(30), {"unfold": ms}, samples=30)
        samples = pd.read_parquet(out / "samples.parquet")
        samples["ms"] *= np.exp(np.random.default_rng(len(name)).normal(0, 0.01, len(samples)))
        samples.to_parquet(out / "samples.parquet", index=False)
        return out

    base, same, slow = one_run("b", 2.0), one_run("s", 2.0), one_run("sl", 4.0)
    assert main(["compare", str(base), str(slow), "--format", "json"]) == 0
    assert '"uncertain"' in capsys.readouterr().out
    history = ["--history", str(store.directory), "--format", "json"]
    assert main(["compare", str(base), str(slow), *history, "--fail-on-regression"]) == 1
    assert '"slower"' in capsys.readouterr().out
    assert main(["compare", str(base), str(same), *history, "--fail-on-regression"]) == 0
    assert main(["compare", str(base), str(slow), "--history", str(tmp_path / "none")]) == 2
    assert "no history store there" in capsys.readouterr().err
