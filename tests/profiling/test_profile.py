"""`invbench profile` on the CPU: trace, kernel table, memory timeline, Nsight commands, errors."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from invbench.backends.registry import builtin_registry
from invbench.cli.app import main
from invbench.core.spec import Dtype, Mode
from invbench.measure import nvtx
from invbench.profiling.nsight import (
    capture_argv,
    kernel_filter,
    kernel_identifier,
    ncu_command,
    nsys_command,
    run_command,
)
from invbench.profiling.plan import (
    CAPTURE_RANGE,
    OUTSIDE_OPS,
    KernelRow,
    ProfileRequest,
    plan_profile,
)
from invbench.profiling.steps import iter_range

SUITE, CASE = "smoke", "k3-g2"  # B=2, C=8, 12x10, K=3, stride 1, G=2 at the suite's batch
ITERS = 3


def unfold_bytes(batch: int, channels: int, k: int, ho: int, wo: int, itemsize: int) -> int:
    """Size of F.unfold(x) for this case: the unfold backend's temporary."""
    return batch * channels * k * k * ho * wo * itemsize


def run_cli(args: list[str]) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(args)
    return status, stdout.getvalue(), stderr.getvalue()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One CPU profile of the unfold and conv3x3 backends, side by side, with Nsight commands."""
    out = tmp_path_factory.mktemp("profile")
    status, stdout, stderr = run_cli(
        [
            "profile",
            "--suite",
            SUITE,
            "--case",
            CASE,
            "--backend",
            "unfold",
            "--backend",
            "conv3x3",
            "--device",
            "cpu",
            "--warmup",
            "1",
            "--iters",
            str(ITERS),
            "--ncu",
            "--nsys",
            "--out",
            str(out),
        ]
    )
    assert status == 0, stderr
    return out, stdout


@pytest.fixture(scope="module")
def layer_profiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("layer")
    status, _, stderr = run_cli(
        [
            "profile",
            "--suite",
            SUITE,
            "--case",
            CASE,
            "--backend",
            "unfold",
            "--device",
            "cpu",
            "--layer",
            "--mode",
            "fwd+bwd",
            "--warmup",
            "1",
            "--iters",
            str(ITERS),
            "--out",
            str(out),
        ]
    )
    assert status == 0, stderr
    return out


def summary(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "profile.json").read_text())
    return data


def backend_summary(out: Path, name: str) -> dict[str, Any]:
    (entry,) = [b for b in summary(out)["backends"] if b["backend"] == name]
    return entry


def case_unfold_bytes(out: Path) -> int:
    g = summary(out)["geometry"]
    k = g["kernel_size"]
    ho = (g["height"] + 2 * (k // 2) - k) // g["stride"] + 1
    wo = (g["width"] + 2 * (k // 2) - k) // g["stride"] + 1
    return unfold_bytes(g["batch"], g["channels"], k, ho, wo, 4)


# -- the trace ------------------------------------------------------------------------


def test_trace_is_json_with_the_backends_ops(profiled: tuple[Path, str]) -> None:
    out, _ = profiled
    trace = json.loads((out / "trace-unfold.json").read_text())
    ops = [e for e in trace["traceEvents"] if e.get("cat") == "cpu_op"]
    names = {e["name"] for e in ops}
    assert "aten::im2col" in names  # F.unfold
    assert {"aten::mul", "aten::sum"} <= names
    iters = [e for e in trace["traceEvents"] if e.get("name") == iter_range("unfold")]
    assert len(iters) == ITERS  # the profiler's own warm-up iteration is not recorded
    conv = json.loads((out / "trace-conv3x3.json").read_text())
    conv_names = {e["name"] for e in conv["traceEvents"] if e.get("cat") == "cpu_op"}
    assert "aten::convolution" in conv_names
    assert "aten::im2col" not in conv_names


# -- the kernel table ---------------------------------------------------------------------


def test_kernel_table_has_rows_and_shares_sum_to_100(profiled: tuple[Path, str]) -> None:
    out, stdout = profiled
    rows = read_csv(out / "kernels.csv")
    for backend in ("unfold", "conv3x3"):
        mine = [r for r in rows if r["backend"] == backend]
        ops = [r for r in mine if r["name"] != OUTSIDE_OPS]
        assert ops, f"no operators for {backend}"
        shares = [float(r["share_pct"]) for r in mine]
        assert all(s >= 0 for s in shares)
        assert sum(shares) == pytest.approx(100.0, abs=0.1)
        per_iter = sum(float(r["per_iter_us"]) for r in mine)
        assert per_iter == pytest.approx(backend_summary(out, backend)["per_iter_us"], rel=1e-3)
    im2col = [r for r in rows if r["backend"] == "unfold" and r["name"] == "aten::im2col"]
    assert len(im2col) == 1 and int(im2col[0]["calls"]) == ITERS
    assert "side by side" in stdout and "aten::im2col" in stdout


# -- the memory timeline --------------------------------------------------------------


def test_memory_peaks_while_the_unfold_temporary_is_alive(profiled: tuple[Path, str]) -> None:
    out, _ = profiled
    size = case_unfold_bytes(out)
    info = backend_summary(out, "unfold")
    assert info["peak_bytes"] >= size
    holders = [a for a in info["held_at_peak"] if "im2col" in a["op"]]
    assert [a["bytes"] for a in holders] == [size]
    timeline = read_csv(out / "memory-unfold.csv")
    levels = [int(r["allocated_bytes"]) for r in timeline]
    assert max(levels) == info["peak_bytes"]
    # the level falls by the temporary's size when it is freed after the peak
    peak_at = levels.index(max(levels))
    frees = [int(r["delta_bytes"]) for r in timeline[peak_at + 1 :]]
    assert -size in frees


def test_layer_phases_split_time_and_memory(layer_profiled: Path) -> None:
    rows = {r["phase"]: r for r in read_csv(layer_profiled / "phases.csv")}
    assert {"generate", "aggregate", "generate backward", "aggregate backward"} <= set(rows)
    # Im2ColBackward0 and MulBackward0 (at least) per iteration belong to the aggregation
    assert int(rows["aggregate backward"]["calls"]) >= 2 * ITERS
    assert int(rows["generate backward"]["calls"]) >= 2 * ITERS  # the two 1x1 convolutions
    assert sum(float(r["share_pct"]) for r in rows.values()) == pytest.approx(100.0, abs=0.1)
    assert all(float(r["share_pct"]) >= 0 for r in rows.values())
    size = case_unfold_bytes(layer_profiled)
    assert int(rows["aggregate"]["peak_bytes"]) >= size
    g = summary(layer_profiled)["geometry"]
    weight_bytes = case_unfold_bytes(layer_profiled) // g["channels"] * g["groups"]
    assert int(rows["generate"]["allocated_bytes_per_iter"]) >= weight_bytes  # the kernels
    trace = json.loads((layer_profiled / "trace-unfold.json").read_text())
    annotations = {e["name"] for e in trace["traceEvents"] if e.get("cat") == "user_annotation"}
    assert {"invbench/unfold/generate", "invbench/unfold/aggregate"} <= annotations


# -- Nsight commands ----------------------------------------------------------------------


def test_printed_nsight_commands_are_well_formed(profiled: tuple[Path, str]) -> None:
    out, stdout = profiled
    lines = [ln for ln in stdout.splitlines() if ln.startswith(("ncu --", "nsys profile "))]
    assert len(lines) == 3  # ncu per backend, one nsys for both
    ncu = shlex.split(lines[0])
    assert ncu[ncu.index("--nvtx-include") + 1] == f"{CAPTURE_RANGE}/"
    assert ncu[ncu.index("--kernel-name") + 1].startswith("regex:")
    assert int(ncu[ncu.index("--launch-count") + 1]) >= 1
    assert Path(ncu[ncu.index("-o") + 1]) == out / "ncu-unfold"
    replay = ncu[ncu.index("invbench") + 1 :]
    assert replay[:1] == ["profile"] and "--capture-only" in replay
    assert replay[replay.index("--case") + 1] == CASE
    nsys = shlex.split(lines[2])
    assert nsys[:2] == ["nsys", "profile"] and "--trace=cuda,nvtx" in nsys
    assert Path(nsys[nsys.index("-o") + 1]) == out / "nsys-unfold+conv3x3"
    assert nsys.count("--backend") == 2
    assert "needs a CUDA device" in stdout
    recorded = {n["tool"] for n in summary(out)["nsight"]}
    assert recorded == {"ncu", "nsys"}


def _gpu_rows(iters: int) -> list[KernelRow]:
    def row(name: str, calls: int, total: float) -> KernelRow:
        return KernelRow("unfold", name, calls, total, total / calls, total / iters, 0.0, "aten::x")

    return [
        row("void at::native::im2col_kernel<float>(long, float const*, long)", iters, 30.0),
        row("void at::native::vectorized_elementwise_kernel<4, Mul>(int, Mul)", iters, 20.0),
        row("void at::native::reduce_kernel<512, 1, Sum>(Sum)", 2 * iters, 10.0),
        row("Memcpy DtoD (Device -> Device)", iters, 1.0),
    ]


def test_ncu_filter_and_launch_count_from_the_kernels_seen() -> None:
    regex, per_iter = kernel_filter(_gpu_rows(4), 4, on_device=True)
    assert regex == "im2col_kernel|vectorized_elementwise_kernel|reduce_kernel"
    assert per_iter == 4  # 1 + 1 + 2 matching launches per iteration; the copy is not a kernel
    regex, per_iter = kernel_filter(_gpu_rows(4), 4, on_device=True, regex="im2col")
    assert (regex, per_iter) == ("im2col", 1)
    assert kernel_filter(_gpu_rows(4), 4, on_device=False) == (".*", None)
    assert kernel_identifier("triton_poi_fused_mul_0") == "triton_poi_fused_mul_0"


def _plan() -> Any:
    request = ProfileRequest(suite=SUITE, case=CASE, backends=["unfold"], device="cpu")
    return plan_profile(request, builtin_registry())


def test_ncu_and_nsys_command_lines(tmp_path: Path) -> None:
    plan = _plan()
    argv = capture_argv(plan, SUITE, ["unfold"])
    ncu = ncu_command(argv, tmp_path, "unfold", "im2col_kernel|reduce_kernel", 3)
    parts = shlex.split(ncu.line)
    assert parts[0] == "ncu" and parts[parts.index("--set") + 1] == "full"
    assert parts[parts.index("--kernel-name") + 1] == "regex:im2col_kernel|reduce_kernel"
    assert parts[parts.index("--launch-count") + 1] == "3"
    assert parts[parts.index("-o") + 1] == str(tmp_path / "ncu-unfold")
    assert parts[parts.index("--batch") + 1] == str(plan.case.geometry.batch)
    assert ncu.report == tmp_path / "ncu-unfold.ncu-rep"
    nsys = nsys_command(argv, tmp_path, "unfold")
    assert shlex.split(nsys.line)[-len(argv) :] == argv
    assert nsys.report == tmp_path / "nsys-unfold.nsys-rep"


def test_nsight_runs_when_on_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan()
    command = ncu_command(capture_argv(plan, SUITE, ["unfold"]), tmp_path, "unfold", ".*", 1)
    assert run_command(command, on_cuda=False).status == "needs cuda"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    assert run_command(command, on_cuda=True).status == "not found"
    fake = bin_dir / "ncu"  # stands in for ncu: writes the report named after -o
    fake.write_text('#!/bin/sh\nwhile [ "$1" != "-o" ]; do shift; done\n: > "$2.ncu-rep"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    outcome = run_command(command, on_cuda=True)
    assert outcome.status == "ran", outcome.message
    assert command.report.exists() and command.log.exists()


def test_capture_only_runs_without_the_profiler(tmp_path: Path) -> None:
    status, _, stderr = run_cli(
        [
            *("profile", "--suite", SUITE, "--case", CASE, "--backend", "unfold"),
            *("--device", "cpu", "--warmup", "1", "--iters", "1", "--capture-only"),
            *("--out", str(tmp_path)),
        ]
    )
    assert status == 0, stderr
    assert "captured 1 iterations" in stderr
    assert list(tmp_path.iterdir()) == []


# -- mistakes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--case", "nope", "--backend", "unfold"], "unknown case 'nope' in suite 'smoke'"),
        (["--case", CASE, "--backend", "nope"], "unknown backend 'nope'"),
        (["--case", CASE], "give at least one --backend"),
    ],
)
def test_bad_names_give_one_line_and_exit_2(args: list[str], expected: str) -> None:
    status, stdout, stderr = run_cli(["profile", "--suite", SUITE, "--device", "cpu", *args])
    assert status == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("invbench: error: ")
    assert expected in lines[0]
    assert stdout == ""


def test_layer_profile_refuses_training_an_inference_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # so that the backend is available here
    status, _, stderr = run_cli(
        [
            *("profile", "--suite", SUITE, "--case", CASE, "--device", "cpu", "--layer"),
            *("--backend", "triton_fused", "--mode", "fwd+bwd"),
        ]
    )
    assert status == 2
    expected = "--layer: 'triton_fused' is an inference kernel (--mode fwd)"
    assert stderr.strip() == f"invbench: error: {expected}"


def test_layer_profile_of_the_conv_it_replaces_is_one_phase(tmp_path: Path) -> None:
    status, _, stderr = run_cli(
        [
            *("profile", "--suite", SUITE, "--case", CASE, "--device", "cpu", "--layer"),
            *("--backend", "conv3x3", "--backend", "unfold", "--mode", "fwd+bwd"),
            *("--warmup", "1", "--iters", str(ITERS), "--out", str(tmp_path)),
        ]
    )
    assert status == 0, stderr
    phases = [(r["backend"], r["phase"]) for r in read_csv(tmp_path / "phases.csv")]
    assert [p for b, p in phases if b == "conv3x3"] == ["layer", "(outside phases)"]
    assert {"generate", "aggregate"} <= {p for b, p in phases if b == "unfold"}
    conv = next(r for r in read_csv(tmp_path / "phases.csv") if r["phase"] == "layer")
    assert float(conv["per_iter_us"]) > 0 and float(conv["share_pct"]) > 50


def test_bad_suite_gives_one_line_and_exit_2() -> None:
    status, _, stderr = run_cli(
        ["profile", "--suite", "nope", "--case", "x", "--backend", "unfold"]
    )
    assert status == 2
    assert stderr.strip().splitlines() == [stderr.strip()]
    assert "unknown suite 'nope'" in stderr


def test_bad_backend_in_a_real_process() -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "invbench", "profile", "--suite", SUITE, "--case", CASE),
            *("--backend", "nope", "--device", "cpu"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        line for line in proc.stderr.strip().splitlines() if line.startswith("invbench: error:")
    ]
    assert "unknown backend 'nope'" in proc.stderr


# -- NVTX ----------------------------------------------------------------------------------


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def push(self, name: str) -> None:
        self.calls.append(f"push {name}")

    def pop(self) -> None:
        self.calls.append("pop")


def test_nvtx_range_is_a_no_op_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nvtx, "_state", {"on": False})
    rec = _Recorder()
    monkeypatch.setattr("torch.cuda.nvtx.range_push", rec.push)
    monkeypatch.setattr("torch.cuda.nvtx.range_pop", rec.pop)
    with nvtx.range("a"):
        pass
    assert rec.calls == []


def test_nvtx_range_pushes_and_pops_even_on_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nvtx, "_state", {"on": True})
    rec = _Recorder()
    monkeypatch.setattr("torch.cuda.nvtx.range_push", rec.push)
    monkeypatch.setattr("torch.cuda.nvtx.range_pop", rec.pop)
    with pytest.raises(ValueError), nvtx.range("outer"), nvtx.range("inner"):
        raise ValueError("boom")
    assert rec.calls == ["push outer", "push inner", "pop", "pop"]


def test_runner_labels_its_phases(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from invbench.running.bench import RunRequest, plan_run
    from invbench.running.engine import Engine
    from invbench.storage.results import ResultWriter

    monkeypatch.setattr(nvtx, "_state", {"on": True})
    rec = _Recorder()
    monkeypatch.setattr("torch.cuda.nvtx.range_push", rec.push)
    monkeypatch.setattr("torch.cuda.nvtx.range_pop", rec.pop)
    registry = builtin_registry()
    request = RunRequest(
        suite=SUITE,
        backends=["unfold"],
        device="cpu",
        dtypes=[Dtype.FLOAT32],
        modes=[Mode.FWD],
        samples=2,
    )
    _, plan = plan_run(request, registry)
    Engine(plan, registry, ResultWriter(tmp_path)).run()
    pushed = [c.removeprefix("push ") for c in rec.calls if c.startswith("push ")]
    assert rec.calls.count("pop") == len(pushed)
    assert f"{CASE} float32 fwd" in pushed
    assert {"unfold/prepare", "unfold/warmup", "unfold/samples"} <= set(pushed)


# -- GPU tables from profiler events (stand-ins for a CUDA profile) ---------------------


def _ev(name: str, device: str = "CPU", start: float = 0.0, end: float = 0.0, **kw: Any) -> Any:
    from types import SimpleNamespace

    fields: dict[str, Any] = dict(
        name=name,
        device_type=SimpleNamespace(name=device),
        time_range=SimpleNamespace(start=start, end=end),
        kernels=[],
        cpu_parent=None,
        is_user_annotation=False,
        device_time_total=end - start if device != "CPU" else 0.0,
        cpu_time_total=end - start,
        sequence_nr=-1,
    )
    fields.update(kw)
    return SimpleNamespace(**fields)


def _kernel(name: str, duration: float) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(name=name, duration=duration)


def test_device_kernel_table_from_cuda_events() -> None:
    from invbench.profiling.tables import device_kernel_table

    events = [
        _ev("aten::im2col", kernels=[_kernel("im2col_kernel", 30.0)]),
        _ev("aten::mul", kernels=[_kernel("mul_kernel", 10.0)]),
        _ev("im2col_kernel", "CUDA", 100.0, 130.0),
        _ev("mul_kernel", "CUDA", 130.0, 140.0),
        _ev(iter_range("unfold"), "CUDA", 90.0, 150.0, is_user_annotation=True),
    ]
    rows, per_iter = device_kernel_table(events, "unfold", iters=1)
    assert [r.name for r in rows] == ["im2col_kernel", "mul_kernel"]
    assert [r.share_pct for r in rows] == pytest.approx([75.0, 25.0])
    assert rows[0].launched_by == "aten::im2col"
    assert per_iter == pytest.approx(40.0)


def test_gpu_phases_count_kernels_launched_from_other_threads(tmp_path: Path) -> None:
    import dataclasses

    import torch

    from invbench.profiling.memory_timeline import memory_timeline
    from invbench.profiling.steps import phase_range
    from invbench.profiling.tables import phase_table

    plan = dataclasses.replace(
        _plan(), device=torch.device("cuda"), layer=True, mode=Mode.FWD_BWD, iters=1
    )
    events = [
        _ev(iter_range("unfold"), start=0.0, end=100.0, is_user_annotation=True),
        _ev(phase_range("unfold", "generate"), start=0.0, end=10.0, is_user_annotation=True),
        _ev(phase_range("unfold", "aggregate"), start=10.0, end=30.0, is_user_annotation=True),
        _ev(phase_range("unfold", "backward"), start=30.0, end=100.0, is_user_annotation=True),
        _ev("aten::conv2d", start=1.0, end=5.0, kernels=[_kernel("gemm", 2.0)]),
        _ev("aten::im2col", start=12.0, end=20.0, kernels=[_kernel("im2col_kernel", 6.0)]),
        # run by the autograd engine's thread while the main thread waits in backward
        _ev("autograd::engine::evaluate_function: Im2ColBackward0", start=40.0, end=55.0),
        _ev("aten::col2im", start=41.0, end=50.0, kernels=[_kernel("col2im_kernel", 12.0)]),
        _ev("aten::add_", start=60.0, end=61.0, kernels=[_kernel("add_kernel", 1.0)]),
    ]
    events[4].cpu_parent = events[1]  # conv2d ran inside generate
    events[5].cpu_parent = events[2]  # im2col ran inside aggregate, sequence number 5
    events[5].sequence_nr = 5
    events[6].sequence_nr = 5
    timeline = memory_timeline({"traceEvents": []}, "cuda")
    rows = {r.phase: r for r in phase_table(events, {"traceEvents": []}, timeline, plan, "unfold")}
    assert rows["generate"].total_us == pytest.approx(2.0)
    assert rows["aggregate"].total_us == pytest.approx(6.0)
    assert rows["aggregate backward"].total_us == pytest.approx(12.0)
    assert rows["generate backward"].total_us == pytest.approx(0.0)
    assert rows["backward (other)"].total_us == pytest.approx(1.0)
    assert sum(r.share_pct for r in rows.values()) == pytest.approx(100.0)


# -- on a CUDA device (`pytest -m gpu`) ---------------------------------------------------


@pytest.mark.gpu
def test_cuda_profile_kernels_and_memory(tmp_path: Path) -> None:
    status, stdout, stderr = run_cli(
        [
            *("profile", "--suite", SUITE, "--case", CASE, "--backend", "unfold"),
            *("--device", "cuda", "--warmup", "1", "--iters", str(ITERS), "--ncu"),
            *("--out", str(tmp_path)),
        ]
    )
    assert status == 0, stderr
    trace = json.loads((tmp_path / "trace-unfold.json").read_text())
    assert any(e.get("cat") == "kernel" for e in trace["traceEvents"])
    rows = read_csv(tmp_path / "kernels.csv")
    assert any("im2col" in r["name"] for r in rows)
    assert sum(float(r["share_pct"]) for r in rows) == pytest.approx(100.0, abs=0.1)
    info = backend_summary(tmp_path, "unfold")
    size = case_unfold_bytes(tmp_path)
    assert info["peak_bytes"] >= size
    assert any(a["bytes"] >= size and "im2col" in a["op"] for a in info["held_at_peak"])
    assert info["memory_snapshot"] or info["notes"]
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith("ncu --")]
    ncu = shlex.split(line)
    assert "im2col_kernel" in ncu[ncu.index("--kernel-name") + 1]
    assert int(ncu[ncu.index("--launch-count") + 1]) >= 3  # im2col, multiply, sum


@pytest.mark.gpu
def test_cuda_layer_phases_include_the_backward_split(tmp_path: Path) -> None:
    status, _, stderr = run_cli(
        [
            *("profile", "--suite", SUITE, "--case", CASE, "--backend", "unfold", "--layer"),
            *("--mode", "fwd+bwd", "--device", "cuda", "--warmup", "1", "--iters", str(ITERS)),
            *("--out", str(tmp_path)),
        ]
    )
    assert status == 0, stderr
    rows = {r["phase"]: r for r in read_csv(tmp_path / "phases.csv")}
    for name in ("generate", "aggregate", "generate backward", "aggregate backward"):
        assert float(rows[name]["total_us"]) > 0, name
    assert sum(float(r["share_pct"]) for r in rows.values()) == pytest.approx(100.0, abs=0.1)


@pytest.mark.gpu
@pytest.mark.slow
def test_cuda_nsight_tools_write_their_reports(tmp_path: Path) -> None:
    import shutil

    if shutil.which("ncu") is None or shutil.which("nsys") is None:
        pytest.skip("ncu or nsys is not on PATH")
    status, stdout, stderr = run_cli(
        [
            *("profile", "--suite", SUITE, "--case", CASE, "--backend", "unfold"),
            *("--device", "cuda", "--warmup", "1", "--iters", "1", "--ncu", "--nsys"),
            *("--ncu-launches", "2", "--out", str(tmp_path)),
        ]
    )
    assert status == 0, stderr
    for report, log in (
        ("ncu-unfold.ncu-rep", "ncu-unfold.log"),
        ("nsys-unfold.nsys-rep", "nsys-unfold.log"),
    ):
        log_text = (tmp_path / log).read_text() if (tmp_path / log).exists() else "no log"
        assert (tmp_path / report).exists(), stdout[-1000:] + log_text[-2000:]


def test_a_failing_backend_spares_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from invbench.backends.base import Closure, InvolutionBackend, Workload

    class Broken(InvolutionBackend):
        name = "broken"
        description = "raises when built"

        def apply(self, x: Any, weight: Any, geom: Any) -> Any:
            raise AssertionError("never called")

        def build(self, work: Workload) -> Closure:
            raise RuntimeError("cannot build this")

    registry = builtin_registry()
    registry.register(Broken())
    monkeypatch.setattr("invbench.backends.registry.default_registry", lambda: registry)
    status, _, stderr = run_cli(
        [
            *("profile", "--suite", SUITE, "--case", CASE, "--backend", "broken"),
            *("--backend", "unfold", "--device", "cpu", "--warmup", "0", "--iters", "1"),
            *("--out", str(tmp_path)),
        ]
    )
    assert status == 1
    assert "broken: failed: RuntimeError: cannot build this" in stderr
    assert (tmp_path / "trace-unfold.json").exists()
    assert summary(tmp_path)["failed_backends"] == ["broken"]
