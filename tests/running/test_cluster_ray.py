"""Cluster runs on a real local Ray cluster: two CPU workers, declared resources.

One Ray instance serves the module (it takes seconds to start); the runs keep to the
smoke suite with few samples, or to spinning test backends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from invbench.backends.registry import Registry  # noqa: E402
from invbench.cli.app import main  # noqa: E402
from invbench.core.spec import Mode  # noqa: E402
from invbench.running.bench import RunRequest  # noqa: E402
from invbench.running.cluster.driver import (  # noqa: E402
    ClusterOptions,
    resume_cluster,
    run_cluster,
)
from invbench.storage.results import META_FILE, ResultRow, load_results  # noqa: E402
from tests.measure_backends import CaseFaultBackend, SpinBackend  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2
SILENCE_S = 5.0  # --timeout of the fault run: seconds a worker may send nothing


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(
        num_cpus=WORKERS,
        resources={"invbench-test": WORKERS},
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},  # workers import tests.*
    )
    assert ray.cluster_resources()["CPU"] == WORKERS
    yield
    ray.shutdown()


def _meta(directory: Path) -> dict[str, Any]:
    return json.loads((directory / META_FILE).read_text())


def _rows(directory: Path) -> list[dict[str, Any]]:
    return list(load_results(directory).rows.to_dict("records"))


def _keyed(directory: Path) -> list[tuple[Any, ...]]:
    return [(r["case"], r["dtype"], r["mode"], r["backend"], r["status"]) for r in _rows(directory)]


def test_smoke_on_two_workers_has_exactly_the_rows_of_one_process(
    cluster: None, tmp_path: Path
) -> None:
    args = ["run", "--suite", "smoke", "--device", "cpu", "--samples", "3"]
    for backend in ("unfold", "conv3x3", "cuda_naive"):
        args += ["--backend", backend]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--out", str(tmp_path / "ray"), "--cluster", "local"]) == 0
    one, sharded = tmp_path / "one", tmp_path / "ray"
    assert sorted(_keyed(sharded)) == sorted(_keyed(one))
    assert len(_keyed(sharded)) == 2 * 3 * 2  # cases x backends x modes
    samples = load_results(sharded).samples
    ok = [r for r in _rows(sharded) if r["status"] == "ok"]
    assert len(samples) == 3 * len(ok)  # every raw sample came back with its row
    shards = _meta(sharded)["cluster"]["shards"]
    assert set(shards) == {"k3-g2", "k5-s2-d2"}
    pids = set()
    for case, entry in shards.items():
        assert entry["status"] == "complete"
        assert len(entry["worker_pids"]) == 1  # one worker made every row of the shard
        pids.update(entry["worker_pids"])
        worker = entry["worker"]
        rows = [r for r in _rows(sharded) if r["case"] == case]
        assert entry["rows"] == len(rows) == 6
        assert {(r["host"], r["device_name"]) for r in rows} == {
            (worker["host"], worker["device_name"])
        }
    assert len(pids) == WORKERS  # the two shards ran side by side on the two workers
    assert _meta(sharded)["run"]["status"] == "complete"


def _fault_registry() -> Registry:
    registry = Registry()
    registry.register(SpinBackend("good", ms=0.05))
    registry.register(CaseFaultBackend("killer", "sigkill", kernel_size=5, mode=Mode.FWD_BWD))
    registry.register(CaseFaultBackend("hanger", "hang", kernel_size=3, mode=Mode.FWD_BWD))
    return registry


def _spin_request(out: Path, backends: tuple[str, ...], timeout_s: float = 600.0) -> RunRequest:
    return RunRequest(
        suite="smoke", backends=backends, device="cpu", samples=3, out=out, timeout_s=timeout_s
    )


def test_a_killed_worker_and_a_silent_one_become_rows(cluster: None, tmp_path: Path) -> None:
    """k5-s2-d2's worker is SIGKILLed in fwd+bwd; k3-g2's hangs there (killed after 5 s)."""
    registry = _fault_registry()
    request = _spin_request(tmp_path, ("good", "killer", "hanger"), timeout_s=SILENCE_S)
    run_cluster(request, registry, tmp_path, ClusterOptions(), worker_registry=registry)
    rows = {(r["case"], r["mode"], r["backend"]): r for r in _rows(tmp_path)}
    assert len(rows) == 2 * 2 * 3
    for case in ("k3-g2", "k5-s2-d2"):
        for backend in ("good", "killer", "hanger"):  # measured before the fault: kept
            assert rows[(case, "fwd", backend)]["status"] == "ok"
    for backend in ("good", "killer", "hanger"):
        killed = rows[("k5-s2-d2", "fwd+bwd", backend)]
        assert killed["status"] == "crashed"
        assert "died" in killed["reason"] and "pid" in killed["reason"]
        silent = rows[("k3-g2", "fwd+bwd", backend)]
        assert silent["status"] == "timeout"
        assert f"within {SILENCE_S:g} s" in silent["reason"]
    shards = _meta(tmp_path)["cluster"]["shards"]
    assert (shards["k5-s2-d2"]["status"], shards["k3-g2"]["status"]) == ("crashed", "timeout")
    assert (shards["k5-s2-d2"]["filled"], shards["k3-g2"]["filled"]) == (3, 3)
    assert _meta(tmp_path)["run"]["status"] == "complete"


class _Interrupt:
    """on_row that presses Ctrl-C after the first row arrives."""

    def __init__(self) -> None:
        self.rows: list[ResultRow] = []

    def __call__(self, row: ResultRow) -> None:
        self.rows.append(row)
        raise KeyboardInterrupt


def test_ctrl_c_keeps_the_rows_and_resume_finishes_the_run(cluster: None, tmp_path: Path) -> None:
    registry = Registry()
    for name in ("a", "b"):
        registry.register(SpinBackend(name, ms=0.05))
    request = _spin_request(tmp_path, ("a", "b"))
    interrupt = _Interrupt()
    with pytest.raises(KeyboardInterrupt):
        run_cluster(
            request,
            registry,
            tmp_path,
            ClusterOptions(),
            worker_registry=registry,
            on_row=interrupt,
        )
    meta = _meta(tmp_path)
    assert meta["run"]["status"] == "interrupted"
    kept = _rows(tmp_path)
    assert 1 <= len(kept) < 8
    assert (kept[0]["case"], kept[0]["backend"]) == (
        interrupt.rows[0].case,
        interrupt.rows[0].backend,
    )
    assert "cancelled" in {s["status"] for s in meta["cluster"]["shards"].values()}
    lanes = resume_cluster(tmp_path, registry, worker_registry=registry)
    assert len(lanes) == 1
    final = _rows(tmp_path)
    keys = [(r["case"], r["mode"], r["backend"]) for r in final]
    assert len(keys) == len(set(keys)) == 2 * 2 * 2
    assert {r["status"] for r in final} == {"ok"}
    first = next(
        r
        for r in final
        if r["case"] == kept[0]["case"]
        and r["backend"] == kept[0]["backend"]
        and r["mode"] == kept[0]["mode"]
    )
    assert first["median_ms"] == kept[0]["median_ms"]  # kept, not measured again
    assert _meta(tmp_path)["run"]["status"] == "complete"
    assert len(_meta(tmp_path)["run"]["resumed"]) == 1


def test_cluster_usage_errors_are_one_line(
    cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["run", "--suite", "smoke", "--out", str(tmp_path), "--cluster", "local"]
    assert main([*base, "--gpu-type", "H100"]) == 2
    assert "--gpu-type runs on GPUs" in capsys.readouterr().err
    assert main([*base, "--device", "cuda"]) == 2
    assert "has no GPUs" in capsys.readouterr().err
