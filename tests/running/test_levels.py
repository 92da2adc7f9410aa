"""Layer and model levels end to end on tiny shapes, the time split, suites and costs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from invbench.backends.registry import default_registry
from invbench.backends.unfold import UnfoldBackend, unfold_involution
from invbench.cli.app import app
from invbench.core.spec import DeviceKind, Dtype, Geometry, Level, Mode
from invbench.core.suites import SuiteError, find_suite, load_suite
from invbench.running.bench import RunRequest, UsageError, execute, plan_run, resume
from invbench.running.levels.layer_workload import generation_macs, layer_cost
from invbench.storage.results import COLUMNS, KEY_COLUMNS, ResultRow, load_results

LAYER_SUITE = """
schema_version = 1
level = "layer"
[run]
batch = 2
dtypes = ["float32"]
modes = ["fwd", "fwd+bwd"]
min_samples = 3
min_time_s = 0.0
max_time_s = 0.2
warmup_ms = 1
[[cases]]
name = "k3"
channels = 16
height = 10
width = 9
kernel_size = 3
groups = 2
[[cases]]
name = "k5-s2-odd"
channels = 16
height = 11
width = 13
kernel_size = 5
stride = 2
groups = 4
"""

MODEL_SUITE = """
schema_version = 1
level = "model"
[run]
batches = [1, 2]
dtypes = ["float32"]
modes = ["fwd", "fwd+bwd"]
[run.cpu]
only = ["d26"]
batches = [2]
image_size = 16
samples = 2
warmup_ms = 0
[[cases]]
name = "d26"
depth = 26
[[cases]]
name = "d50"
depth = 50
"""


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: a shared, loaded CPU runs these small shapes far faster so."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def run_suite(path: Path, out: Path, backends: list[str], **kw: object) -> list[ResultRow]:
    request = RunRequest(suite=str(path), backends=backends, device="cpu", **kw)  # type: ignore[arg-type]
    registry = default_registry()
    suite, plan = plan_run(request, registry)
    return execute(suite, plan, registry, out)


def test_shipped_suites_load_with_levels() -> None:
    layers = find_suite("resnet-layers")
    assert layers.level is Level.LAYER and len(layers.cases) == 8
    assert find_suite("resnet-shapes").level is Level.OP
    models = find_suite("rednet-vs-resnet")
    assert models.level is Level.MODEL
    gpu = models.for_run(models.settings(DeviceKind.CUDA))
    assert sorted({c.depth for c in gpu.cases}) == [26, 50, 101]
    assert sorted({c.geometry.batch for c in gpu.cases}) == [1, 8, 64]
    assert {c.geometry.height for c in gpu.cases} == {224}
    cpu = models.for_run(models.settings(DeviceKind.CPU))
    assert len(cpu.cases) < len(gpu.cases)
    assert all(c.geometry.height < 224 for c in cpu.cases)
    # an explicit batch wins over the suite's batches
    assert {c.geometry.batch for c in models.for_run(models.run, batch=3).cases} == {3}


ONE_CASE = '[[cases]]\nname = "a"\nchannels = 4\nheight = 4\nkernel_size = 3\n'


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('level = "network"\n', "level must be one of op, layer, model"),
        ('level = "model"\n[[cases]]\nname = "a"\ndepth = 18\n', "depth must be one of"),
        ('level = "model"\n[[cases]]\nname = "a"\ndepth = 26\nchannels = 3\n', "unknown key"),
        ('level = "model"\n[[cases]]\nname = "a"\nheight = 64\n', "missing required key 'depth'"),
        (
            '[run]\nonly = ["b"]\n' + ONE_CASE,
            "only: no case named 'b'",
        ),
        (
            "[run]\nbatches = [0]\n" + ONE_CASE,
            "batches must be a non-empty list of positive ints",
        ),
    ],
)
def test_suite_level_errors(tmp_path: Path, text: str, match: str) -> None:
    path = write(tmp_path, "bad", "schema_version = 1\n" + text)
    with pytest.raises(SuiteError, match=match):
        load_suite(path)


def test_layer_cost_counts_generation() -> None:
    g = Geometry(batch=2, channels=64, height=56, width=56, kernel_size=7, groups=4)
    fwd = layer_cost(g, Dtype.FLOAT32, Mode.FWD)
    fused = layer_cost(g, Dtype.FLOAT32, Mode.FWD, fused=True)
    aggregation = 2 * g.numel("out") * 49
    assert fwd.flops == aggregation + 2 * generation_macs(g) == fused.flops
    assert generation_macs(g) == 2 * 56 * 56 * (64 * 16 + 16 * 49 * 4)
    # the fused layer moves x and out (and the parameters) only
    assert fused.bytes < fwd.bytes / 3
    assert fused.bytes >= 4 * (g.numel("x") + g.numel("out"))
    bwd = layer_cost(g, Dtype.FLOAT32, Mode.FWD_BWD)
    assert bwd.flops == 3 * fwd.flops


def test_layer_level_end_to_end(tmp_path: Path) -> None:
    path = write(tmp_path, "tiny-layers", LAYER_SUITE)
    rows = run_suite(path, tmp_path / "out", ["unfold", "conv3x3", "dwconv"])
    frame = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert list(frame.columns) == list(COLUMNS)
    assert len(rows) == 2 * 3 * 2
    assert {r.status for r in rows} == {"ok"}, [(r.backend, r.reason) for r in rows]
    assert {r.level for r in rows} == {"layer"}
    for r in rows:
        assert r.median_ms is not None and r.median_ms > 0 and r.peak_mem_bytes is not None
        if r.backend == "unfold":
            assert r.max_rel_err is not None and r.max_rel_err < 1e-4
            assert r.gen_ms is not None and r.agg_ms is not None
            assert r.gen_p20_ms is not None and r.gen_p20_ms <= r.gen_ms
        else:
            assert r.kind == "baseline" and r.gen_ms is None and r.max_rel_err is None
    odd = [r for r in rows if r.case == "k5-s2-odd"]
    assert {(r.out_height, r.out_width) for r in odd} == {(6, 7)}
    # NVML telemetry is taken as at the op level (here: why there is none)
    assert {r.telemetry for r in rows} == {"unavailable: not a CUDA run (device cpu)"}


def test_interrupted_layer_run_resumes_without_measuring_again(tmp_path: Path) -> None:
    path = write(tmp_path, "tiny-layers", LAYER_SUITE)
    registry = default_registry()
    request = RunRequest(
        suite=str(path), backends=["unfold", "conv3x3"], device="cpu", modes=[Mode.FWD]
    )
    suite, plan = plan_run(request, registry)
    out = tmp_path / "out"

    def stop_after_two(row: ResultRow) -> None:
        if len(load_results(out).rows) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(suite, plan, registry, out, on_row=stop_after_two, request=request)
    first = load_results(out)
    assert len(first.rows) == 2 and first.meta["run"]["status"] == "interrupted"

    _, _, rows = resume(out, registry)
    assert len(rows) == 4  # the two kept and the two measured now
    final = load_results(out)
    keys = [tuple(r) for r in final.rows[list(KEY_COLUMNS)].itertuples(index=False)]
    assert len(keys) == 2 * 2 and len(set(keys)) == 4  # 2 cases x 2 backends, no duplicate
    assert set(final.rows["status"]) == {"ok"} and set(final.rows["level"]) == {"layer"}
    assert final.rows["median_ms"].iloc[:2].tolist() == first.rows["median_ms"].tolist()
    assert final.meta["run"]["status"] == "complete" and len(final.meta["run"]["resumed"]) == 1


@pytest.fixture
def wrong_backend() -> Iterator[str]:
    class Off(UnfoldBackend):
        name = "off-by-some"
        description = "unfold with an error"

        def apply(self, x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
            k, s, p, d = geom.kernel_size, geom.stride, geom.pad, geom.dilation
            return unfold_involution(x, weight, k, s, p, d) * 1.01

    registry = default_registry()
    registry.register(Off())
    try:
        yield Off.name
    finally:
        registry.unregister(Off.name)


def test_layer_check_catches_a_wrong_aggregation(tmp_path: Path, wrong_backend: str) -> None:
    path = write(tmp_path, "tiny-layers", LAYER_SUITE)
    rows = run_suite(path, tmp_path / "out", [wrong_backend], modes=[Mode.FWD])
    assert [r.status for r in rows] == ["incorrect", "incorrect"]
    assert "exceeds" in rows[0].reason


@pytest.mark.alone  # times real work and judges it: not next to another test process
def test_generation_plus_aggregation_is_the_layer_within_the_spread(tmp_path: Path) -> None:
    # Large enough (about a millisecond a layer) that the few tens of microseconds of
    # Python dispatch the whole module adds over its two halves stay inside the spread.
    text = LAYER_SUITE.replace('modes = ["fwd", "fwd+bwd"]', 'modes = ["fwd"]')
    text = text.replace(
        "channels = 16\nheight = 10\nwidth = 9", "channels = 64\nheight = 56\nwidth = 56"
    )
    text = text.replace(
        "channels = 16\nheight = 11\nwidth = 13", "channels = 64\nheight = 57\nwidth = 55"
    )
    path = write(tmp_path, "split", text)
    # In a process whose glibc keeps freed memory (no mmap per large buffer, no trim).
    # With its defaults, each call's 14 MB unfold buffer can be mapped and faulted in
    # afresh, at a cost that depends on the host's memory reclaim, not on the split this
    # test checks: on a VM that reclaimed actively, aggregation alone timed 1.14 to 1.70
    # times the whole layer (five of the failing runs) and this test failed 6 runs of 10;
    # with these settings it passed 5 of 5.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(1 << 30), MALLOC_TRIM_THRESHOLD_=str(1 << 30))
    out = tmp_path / "out"
    args = ["run", "--suite", str(path), "--backend", "unfold", "--device", "cpu"]
    cmd = [sys.executable, "-m", "invbench", *args, "--samples", "25", "--out", str(out)]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    records = load_results(out).rows.to_dict("records")
    rows = [ResultRow(**{str(k): v for k, v in r.items()}) for r in records]
    assert len(rows) == 2
    for r in rows:
        assert r.gen_ms is not None and r.agg_ms is not None and r.median_ms is not None
        assert r.gen_p20_ms is not None and r.gen_p80_ms is not None
        assert r.agg_p20_ms is not None and r.agg_p80_ms is not None
        assert r.p20_ms is not None and r.p80_ms is not None
        spread = (
            (r.p80_ms - r.p20_ms) + (r.gen_p80_ms - r.gen_p20_ms) + (r.agg_p80_ms - r.agg_p20_ms)
        )
        gap = abs(r.gen_ms + r.agg_ms - r.median_ms)
        assert gap <= max(spread, 0.05 * r.median_ms), (r.case, r.gen_ms, r.agg_ms, r.median_ms)
        assert 0 < r.gen_ms < r.median_ms and 0 < r.agg_ms < r.median_ms
        assert "split:" not in r.warnings


def test_model_level_end_to_end(tmp_path: Path) -> None:
    path = write(tmp_path, "tiny-models", MODEL_SUITE)
    rows = run_suite(path, tmp_path / "out", ["unfold", "conv3x3", "dwconv"])
    # d26 only, batch 2, two modes, rednet (unfold) and resnet (conv3x3); no dwconv
    assert len(rows) == 2 * 2
    assert {r.status for r in rows} == {"ok"}, [(r.model, r.reason) for r in rows]
    assert {(r.model, r.backend) for r in rows} == {
        ("rednet-26", "unfold"),
        ("resnet-26", "conv3x3"),
    }
    assert {(r.case, r.batch, r.height) for r in rows} == {("d26/b2", 2, 16)}
    for r in rows:
        assert r.level == "model" and r.median_ms is not None and r.images_per_s is not None
        assert r.images_per_s == pytest.approx(r.batch / r.median_ms * 1e3)
        assert r.max_rel_err is not None and r.max_rel_err < 1e-3
        assert r.flops > 0 and r.peak_mem_bytes is not None
    fwd = {(r.case, r.model): r.flops for r in rows if r.mode == "fwd"}
    train = {(r.case, r.model): r.flops for r in rows if r.mode == "fwd+bwd"}
    assert all(train[k] == 3 * fwd[k] for k in fwd)


def test_backend_must_run_at_the_suite_level(tmp_path: Path) -> None:
    class OpOnly(UnfoldBackend):
        name = "op-only"
        levels = frozenset({Level.OP})

    registry = default_registry()
    registry.register(OpOnly())
    try:
        path = write(tmp_path, "tiny-layers", LAYER_SUITE)
        with pytest.raises(UsageError, match="does not run at the layer level"):
            plan_run(RunRequest(suite=str(path), backends=["op-only"], device="cpu"), registry)
        _, plan = plan_run(RunRequest(suite=str(path), device="cpu"), registry)
        assert "op-only" not in plan.backends and "unfold" in plan.backends
    finally:
        registry.unregister("op-only")


def test_cli_prints_layer_split_and_model_throughput(tmp_path: Path) -> None:
    layers = write(tmp_path, "tiny-layers", LAYER_SUITE)
    args = ["run", "--suite", str(layers), "--device", "cpu", "--samples", "3", "--mode", "fwd"]
    result = CliRunner().invoke(app, [*args, "--backend", "unfold", "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "gen + agg" in result.output and "2 rows (2 ok)" in result.output
    models = write(tmp_path, "tiny-models", MODEL_SUITE)
    args = ["run", "--suite", str(models), "--device", "cpu", "--mode", "fwd", "--batch", "2"]
    result = CliRunner().invoke(
        app, [*args, "--backend", "conv3x3", "--backend", "unfold", "--out", str(tmp_path / "b")]
    )
    assert result.exit_code == 0, result.output
    assert "img/s" in result.output and "rednet-26 (unfold)" in result.output
