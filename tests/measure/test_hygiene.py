"""Process hygiene: threads, CPUs, the collector, the host's load, no harness thread."""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path

import pytest
import torch
from rich.progress import Progress

from invbench.cli.run import quiet_progress
from invbench.measure.hygiene import (
    HostLoad,
    apply_threads,
    collector_paused,
    parse_cpus,
    usable_cpus,
)
from invbench.measure.timing import CpuTimer


def test_cpu_lists_parse_and_bad_ones_say_why() -> None:
    assert parse_cpus("0") == [0]
    assert parse_cpus("0-2,5") == [0, 1, 2, 5]
    for bad in ("", "a", "3-1", "0-", "1,,2"):
        with pytest.raises(ValueError, match="--affinity"):
            parse_cpus(bad)


def test_threads_are_set_and_reported() -> None:
    before = torch.get_num_threads()
    try:
        assert apply_threads(1) == 1 == torch.get_num_threads()
        assert apply_threads(None) == 1  # None keeps what is set
        with pytest.raises(ValueError, match="--threads"):
            apply_threads(0)
    finally:
        torch.set_num_threads(before)
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)


def test_the_collector_is_off_inside_timed_batches_and_restored() -> None:
    seen: list[bool] = []
    assert gc.isenabled()
    CpuTimer().sample(lambda: seen.append(gc.isenabled()), 5)
    assert seen == [False] * 5 and gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()


def test_host_load_and_steal_come_from_proc(tmp_path: Path) -> None:
    loadavg, stat = tmp_path / "loadavg", tmp_path / "stat"
    loadavg.write_text("3.50 2.00 1.00 2/300 12345\n")
    stat.write_text("cpu  100 0 100 700 0 0 0 100 0 0\ncpu0 1 2 3\n")
    host = HostLoad(loadavg, stat)
    before = host.snapshot()
    stat.write_text("cpu  200 0 200 1300 0 0 0 300 0 0\n")
    after = host.snapshot()
    assert after.load_1m == 3.5
    # 200 of the 1000 jiffies that passed went to other guests
    assert HostLoad.steal_pct(before, after) == pytest.approx(20.0)
    missing = HostLoad(tmp_path / "none", tmp_path / "none").snapshot()
    assert missing.load_1m is None and HostLoad.steal_pct(missing, missing) is None


def test_the_run_progress_display_starts_no_thread() -> None:
    # rich's default display redraws from a thread of its own, which would run in the
    # middle of timed batches; the run's display starts none
    before = set(threading.enumerate())
    with Progress(transient=True) as default:
        default.add_task("x")
        assert len(set(threading.enumerate()) - before) == 1
    before = set(threading.enumerate())  # the default's thread may still be ending
    with quiet_progress() as quiet:
        task = quiet.add_task("x", total=2)
        quiet.update(task, advance=1, refresh=True)
        assert set(threading.enumerate()) - before == set()
