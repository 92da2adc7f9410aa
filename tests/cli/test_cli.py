"""`invbench` end to end: real runs through CliRunner and a subprocess, and user mistakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from invbench.backends.registry import default_registry
from invbench.cli.app import app, main
from invbench.core.spec import DeviceKind, Dtype, Level
from invbench.core.suites import find_suite
from invbench.storage.results import COLUMNS, KEY_COLUMNS, RESULT_SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]


def check_run_dir(out: Path, backends: list[str]) -> pd.DataFrame:
    rows = pd.read_parquet(out / "results.parquet")
    csv = pd.read_csv(out / "results.csv")
    samples = pd.read_parquet(out / "samples.parquet")
    meta = json.loads((out / "meta.json").read_text())
    suite = find_suite("smoke")
    assert list(rows.columns) == list(COLUMNS)
    assert len(rows) == len(csv) == len(suite.cases) * len(backends) * 2  # fwd, fwd+bwd
    assert set(rows.backend) == set(backends)
    registry = default_registry()
    for name, group in rows.groupby("backend"):
        reason = registry.get(str(name)).availability(DeviceKind.CPU, Dtype.FLOAT32)
        if reason is None:
            assert set(group.status) == {"ok"}, group[["status", "reason"]]
        else:
            assert set(group.status) == {"skipped"} and set(group.reason) == {reason}
            assert group.median_ms.isna().all()
    n_rows = len(rows)
    rows = rows[rows.status == "ok"]
    assert (rows.device == "cpu").all() and (rows.dtype == "float32").all()
    assert (rows.min_ms <= rows.median_ms).all() and (rows.p20_ms <= rows.p80_ms).all()
    assert (rows.median_ms > 0).all() and (rows.peak_mem_bytes >= 0).all()
    assert (rows.mem_method == "torch-cpu-peak").all()
    inv = rows[rows.kind == "involution"]
    assert (inv.max_rel_err < 1e-4).all()
    # fwd+bwd does three times the forward's work
    fwd = inv[inv["mode"] == "fwd"].set_index(["case", "backend"]).flops
    bwd = inv[inv["mode"] == "fwd+bwd"].set_index(["case", "backend"]).flops
    assert (bwd == 3 * fwd).all()
    assert rows.gbps.round(6).equals((rows.bytes / rows.median_ms / 1e6).round(6))
    assert len(samples) == rows.n_samples.sum()
    assert len(rows) > 0
    per_row = samples.groupby(list(KEY_COLUMNS)).ms.median()
    for _, r in rows.iterrows():
        key = tuple(r[k] for k in KEY_COLUMNS)
        assert per_row.loc[key] == pytest.approx(r.median_ms)
    assert meta["schema_version"] == RESULT_SCHEMA_VERSION
    assert meta["run"]["status"] == "complete" and meta["run"]["rows"] == n_rows
    assert meta["torch"] and meta["cpu"] and "commit" in meta["git"]
    assert "nvml" in meta and "command_line" in meta
    return rows


def test_cli_runner_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    backends = ["unfold", "conv3x3", "dwconv"]
    args = ["run", "--suite", "smoke", "--device", "cpu", "--out", str(out), "--samples", "5"]
    for b in backends:
        args += ["--backend", b]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "written to" in result.output
    rows = check_run_dir(out, backends)
    assert (rows.n_samples == 5).all() and (rows.stop_reason == "fixed").all()


def test_case_option_runs_only_the_named_cases(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "--suite", "smoke", "--device", "cpu", "--out", str(out), "--samples", "3"]
    args += ["--backend", "unfold", "--case", "k5-s2-d2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(out / "results.parquet")
    assert set(rows["case"]) == {"k5-s2-d2"}
    run = json.loads((out / "meta.json").read_text())["run"]
    assert run["cases"] == ["k5-s2-d2"] and run["request"]["cases"] == ["k5-s2-d2"]


@pytest.mark.slow
def test_subprocess_smoke_run_all_backends(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "invbench",
            "run",
            "--suite",
            "smoke",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "smoke on cpu" in proc.stdout
    op_backends = [b.name for b in default_registry() if Level.OP in b.levels]
    rows = check_run_dir(out, op_backends)
    assert set(rows.stop_reason) <= {"converged", "time-cap"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--suite", "nope"], "unknown suite 'nope'"),
        (["run", "--suite", "smoke", "--backend", "zzz"], "unknown backend 'zzz'"),
        (["run", "--suite", "smoke", "--dtype", "float8"], "Invalid value for '--dtype'"),
        (["run", "--suite", "smoke", "--mode", "bwd"], "Invalid value for '--mode'"),
        (["run", "--suite", "smoke", "--batch", "0"], "--batch must be >= 1"),
        (["run", "--suite", "smoke", "--batch", "two"], "Invalid value for '--batch'"),
        (["run", "--suite", "smoke", "--device", "tpu"], "--device must be auto, cpu or cuda"),
        (["run", "--suite", "smoke", "--case", "k9"], "has no case 'k9' (cases: k3-g2, k5-s2-d2"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("invbench: error:") and message in err
    assert "\n" not in err and "Traceback" not in err


def test_malformed_suite_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('schema_version = 1\n[[cases]]\nname = "a"\nchannels = 0\n')
    assert main(["run", "--suite", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml: case 'a': channels must be an int >= 1, got 0" in err


def test_usage_error_in_a_real_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "invbench", "run", "--suite", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "invbench: error: unknown suite 'nope' (known: batch-sweep, kernel-sweep, "
        "rednet-vs-resnet, resnet-layers, resnet-shapes, smoke)"
    ]


def test_list_and_env() -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0, listed.output
    for name in ("unfold", "compile", "conv3x3", "dwconv", "resnet-shapes", "kernel-sweep"):
        assert name in listed.output
    env = runner.invoke(app, ["env", "--json"])
    assert env.exit_code == 0, env.output
    info = json.loads(env.output)
    assert info["torch"] and "nvml" in info and "nvcc" in info and "ninja" in info


def test_list_shows_whole_dtypes_and_the_case_names_of_each_suite() -> None:
    listed = CliRunner().invoke(app, ["list", "--device", "cpu"])
    assert listed.exit_code == 0, listed.output
    unfold = next(line for line in listed.output.splitlines() if line.startswith("│ unfold "))
    assert "float64" in unfold and "…" not in listed.output
    smoke = next(line for line in listed.output.splitlines() if line.startswith("│ smoke "))
    assert "2: k3-g2, k5-s2-d2" in smoke
    assert "layer2/k3" in listed.output  # the names --case and profile --case take


def test_output_options_follow_one_convention() -> None:
    """--out names a directory and --output a file, in every command; no third spelling."""
    import typer

    command = typer.main.get_command(app)
    seen = set()
    for name, sub in command.commands.items():  # type: ignore[attr-defined]
        for param in sub.params:
            for flag in getattr(param, "opts", []):
                if not flag.startswith("--out"):
                    continue
                seen.add(flag)
                text = (param.help or "").lower()
                if flag == "--out":
                    assert "director" in text or "folder" in text, (name, text)
                else:
                    assert flag == "--output" and "file" in text, (name, flag, text)
    assert seen == {"--out", "--output"}
