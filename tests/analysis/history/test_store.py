"""The history store: idempotent adds, schema version, concurrent adds, a kill mid-write."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from invbench.analysis.history.store import DB_FILE, Filters, HistoryError, HistoryStore
from invbench.storage.results import (
    KEY_COLUMNS,
    META_FILE,
    RESULTS_FILE,
    SAMPLES_FILE,
    rows_frame,
    write_json,
)

from .helpers import CPU_META, commit_name, row, write_run

PYTHON = sys.executable


def test_add_is_idempotent_and_keeps_rows_and_samples(tmp_path: Path) -> None:
    run = write_run(tmp_path / "r1", commit_name(1), {"unfold": 2.0, "conv3x3": 1.0}, samples=7)
    store = HistoryStore(tmp_path / "h")
    first = store.add(run)
    again = store.add(run)
    assert first.added and not again.added and first.run_id == again.run_id
    assert len(store.runs()) == 1
    rows = store.rows()
    assert sorted(rows["backend"]) == ["conv3x3", "unfold"]
    unfold = rows[rows["backend"] == "unfold"].iloc[0]
    assert unfold["median_ms"] == 2.0 and unfold["commit_sha"] == commit_name(1)
    assert list(store.samples(str(unfold["run_id"]), unfold)) == [2.0] * 7
    assert store.check() == []


def test_filters_select_rows(tmp_path: Path) -> None:
    run = write_run(
        tmp_path / "r1",
        commit_name(1),
        {"unfold": 2.0},
        extra_rows=[row("unfold", 3.0, mode="fwd+bwd"), row("compile", status="skipped")],
    )
    store = HistoryStore(tmp_path / "h")
    store.add(run)
    assert len(store.rows(Filters(mode=["fwd+bwd"]))) == 1
    assert len(store.rows(Filters(backend=["unfold"]))) == 2
    assert len(store.rows(ok_only=True)) == 2
    machine = store.machines()["machine_id"].iloc[0]
    assert len(store.rows(Filters(machine=[machine[:6]]))) == 3
    assert len(store.rows(Filters(machine=["Test CPU"]))) == 3
    assert store.rows(Filters(machine=["H100"])).empty


def test_bad_runs_and_newer_schema_are_refused(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h")
    with pytest.raises(HistoryError, match=r"no results\.parquet"):
        store.add(tmp_path)
    dirty = write_run(tmp_path / "dirty", commit_name(1), {"unfold": 1.0})
    meta = {**CPU_META, "git": {"commit": commit_name(1), "dirty": True}}
    write_json(dirty / META_FILE, meta)
    with pytest.raises(HistoryError, match="uncommitted changes"):
        store.add(dirty)
    assert store.add(dirty, allow_dirty=True).added
    partial = write_run(tmp_path / "partial", commit_name(2), {"unfold": 1.0})
    clean = {**meta, "git": {"commit": commit_name(2), "dirty": False}}
    write_json(partial / META_FILE, {**clean, "run": {"status": "interrupted"}})
    with pytest.raises(HistoryError, match="interrupted"):
        store.add(partial)
    with sqlite3.connect(store.path) as con:
        con.execute("UPDATE info SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(HistoryError, match="schema 99"):
        store.runs()
    with pytest.raises(HistoryError, match="holds no history"):
        HistoryStore(tmp_path / "none").runs()


# Imports first (torch makes that seconds), says "ready", waits for a line, then adds its runs.
_WORKER = """
import sys
from invbench.analysis.history.store import HistoryStore
print("ready", flush=True)
sys.stdin.readline()
store = HistoryStore(sys.argv[1])
print(" ".join(str(store.add(run).added) for run in sys.argv[2:]), flush=True)
"""


def _adder(store: Path, *runs: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [PYTHON, "-c", _WORKER, str(store), *map(str, runs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def test_two_concurrent_adds_both_land_and_each_run_once(tmp_path: Path) -> None:
    runs = [_big_run(tmp_path / f"r{i}", commit_name(i), 60, 4000) for i in range(2)]
    store = tmp_path / "h"
    procs = [_adder(store, runs[0], runs[1]), _adder(store, runs[1], runs[0])]
    for proc in procs:  # both imported: start them together
        _go(proc)
    outs = [proc.communicate(timeout=120)[0].split() for proc in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sum(o.count("True") for o in outs) == 2  # each run stored by one of them
    history = HistoryStore(store)
    assert len(history.runs()) == 2 and len(history.rows()) == 120
    assert history.check() == []


def _big_run(out: Path, commit: str, n_rows: int, n_samples: int) -> Path:
    """A run with many rows and samples, written directly (fast) in the result format."""
    rows = [row("unfold", 1.0 + i * 1e-3, batch=i + 1) for i in range(n_rows)]
    out.mkdir(parents=True)
    frame = rows_frame(rows)
    frame.to_parquet(out / RESULTS_FILE, index=False)
    keys = frame[list(KEY_COLUMNS)].loc[frame.index.repeat(n_samples)].reset_index(drop=True)
    keys["sample"] = np.tile(np.arange(n_samples), n_rows)
    keys["ms"] = np.random.default_rng(0).random(len(keys))
    keys.to_parquet(out / SAMPLES_FILE, index=False)
    meta = {**CPU_META, "git": {"commit": commit, "dirty": False}, "run": {"status": "complete"}}
    write_json(out / META_FILE, meta)
    return out


def test_add_killed_mid_write_leaves_the_store_readable_without_half_a_run(
    tmp_path: Path,
) -> None:
    store = tmp_path / "h"
    HistoryStore(store).add(write_run(tmp_path / "small", commit_name(1), {"unfold": 1.0}))
    big = _big_run(tmp_path / "big", commit_name(2), n_rows=100, n_samples=10_000)
    journal = store / f"{DB_FILE}-journal"
    size_before = (store / DB_FILE).stat().st_size
    proc = _adder(store, big)
    _go(proc)
    deadline = time.monotonic() + 120
    # Kill once the transaction has spilled pages into the database file itself.
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and (store / DB_FILE).stat().st_size > size_before + (2 << 20):
            break
        time.sleep(0.001)
    assert proc.poll() is None, "the add finished before it could be killed mid-write"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert journal.exists()  # the kill left a hot journal behind

    history = HistoryStore(store)
    assert list(history.runs()["commit_sha"]) == [commit_name(1)]  # no half run
    assert len(history.rows()) == 1
    assert history.check() == []
    assert history.add(big).added  # and the run can be added again, whole
    assert len(history.rows()) == 101
    assert pd.Series(history.rows()["run_id"]).nunique() == 2
