"""Cluster runs without Ray: shards, the rows a shard owes, the worker stream, CLI errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from invbench.backends.registry import Registry
from invbench.cli.app import main
from invbench.core.spec import Level, Mode, Status
from invbench.running.bench import RunRequest, execute, plan_run
from invbench.running.cluster.shards import (
    key_of,
    missing_rows,
    owed_rows,
    plan_order,
    plan_shards,
    shard_plan,
)
from invbench.running.cluster.task import ShardJob, run_shard
from invbench.storage.results import load_results, row_from_record
from tests.measure_backends import SpinBackend

BACKENDS = ("unfold", "conv3x3", "cuda_naive")  # cuda_naive: a skipped row on the CPU


def _request(out: Path | None = None) -> RunRequest:
    return RunRequest(suite="smoke", backends=BACKENDS, device="cpu", samples=3, out=out)


def test_one_shard_per_case_and_per_gpu_type(registry: Registry) -> None:
    _, plan = plan_run(_request(), registry)
    shards = plan_shards(plan)
    assert [s.case for s in shards] == [c.name for c in plan.cases] == ["k3-g2", "k5-s2-d2"]
    typed = plan_shards(plan, "H100")
    assert [s.label for s in typed] == ["H100/k3-g2", "H100/k5-s2-d2"]
    one = shard_plan(plan, shards[1])
    assert [c.name for c in one.cases] == ["k5-s2-d2"]
    assert (one.backends, one.dtypes, one.modes) == (plan.backends, plan.dtypes, plan.modes)


def test_owed_rows_are_the_rows_a_single_process_run_writes(
    registry: Registry, tmp_path: Path
) -> None:
    suite, plan = plan_run(_request(tmp_path), registry)
    rows = execute(suite, plan, registry, tmp_path)
    owed = [b for s in plan_shards(plan) for b in owed_rows(plan, registry, s)]
    assert sorted(key_of(b) for b in owed) == sorted(r.key() for r in rows)
    assert len(owed) == 2 * len(BACKENDS) * len(plan.modes)
    by_key = {r.key(): r for r in rows}
    for base in owed:  # the analytic columns match too
        assert (base["flops"], base["bytes"]) == (
            by_key[key_of(base)].flops,
            by_key[key_of(base)].bytes,
        )
    # rows of a single run, in the plan's order, are the order cluster results are written in
    ordered = sorted(rows, key=plan_order(plan))
    assert [r.key() for r in ordered] == [key_of(b) for b in owed]


def test_missing_rows_fill_only_what_was_not_written(registry: Registry, tmp_path: Path) -> None:
    suite, plan = plan_run(_request(tmp_path), registry)
    shard = plan_shards(plan)[0]
    owed = owed_rows(plan, registry, shard)
    rows = execute(suite, shard_plan(plan, shard), registry, tmp_path)
    assert missing_rows(owed, rows, "crashed", "gone") == []
    filled = missing_rows(owed, rows[:2], Status.CRASHED.value, "worker died")
    assert sorted(r.key() for r in filled) == sorted(r.key() for r in rows[2:])
    assert {r.status for r in filled} == {"crashed"} and {r.reason for r in filled} == {
        "worker died"
    }


def test_the_worker_streams_a_start_message_then_stamped_rows(registry: Registry) -> None:
    small = Registry()
    small.register(SpinBackend("a", ms=0.05))
    small.register(SpinBackend("b", ms=0.05))
    request = RunRequest(suite="smoke", backends=("a", "b"), device="cpu", samples=3)
    _, plan = plan_run(request, small)
    shard = plan_shards(plan)[1]
    messages = list(run_shard(ShardJob(shard, shard_plan(plan, shard), Level.OP, small)))
    assert messages[0][0] == "start"
    info = messages[0][1]
    assert info["host"] and info["device_name"] and info["ceilings"]["device"] == "cpu"
    rows = [row_from_record(m[1]) for m in messages[1:]]
    assert [m[0] for m in messages[1:]] == ["row"] * 4
    assert {r.case for r in rows} == {"k5-s2-d2"}
    assert {(r.backend, r.mode) for r in rows} == {
        (b, m.value) for b in ("a", "b") for m in (Mode.FWD, Mode.FWD_BWD)
    }
    assert {(r.host, r.device_name, r.device_uuid) for r in rows} == {
        (info["host"], info["device_name"], "")
    }
    assert all(len(m[2]) == 3 for m in messages[1:])  # the raw samples travel with the row


def test_single_process_rows_record_host_and_device(registry: Registry, tmp_path: Path) -> None:
    suite, plan = plan_run(_request(tmp_path), registry)
    execute(suite, shard_plan(plan, plan_shards(plan)[0]), registry, tmp_path)
    rows = load_results(tmp_path).rows
    assert rows["host"].str.len().min() > 0 and rows["device_name"].str.len().min() > 0
    assert set(rows["device_uuid"]) == {""}  # a CPU has none


def test_without_ray_the_option_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["run", "--suite", "smoke", "--cluster", "local"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "pip install 'invbench[ray]'" in err


def test_gpu_type_needs_a_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--suite", "smoke", "--gpu-type", "H100"]) == 2
    assert "--gpu-type needs --cluster" in capsys.readouterr().err
