"""scripts/first-light.sh and scripts/gpu-check.sh, on the CPU.

Without a GPU they must say so in one line and exit 2. Their orchestration (the log,
the time budget, the files left in OUT, a failing step) runs against a stand-in python
that answers like a GPU machine would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
FIRST_LIGHT = ROOT / "scripts" / "first-light.sh"
GPU_CHECK = ROOT / "scripts" / "gpu-check.sh"
MAX_FILES = 8  # what one call of a lent GPU machine brings back

# A stand-in for python3 on a GPU machine: imports succeed, pytest prints a line per
# test, `invbench run --out DIR` writes a run directory.
FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "$*" >>"$FAKE_CALLS"
case "$1" in
-c)
    case "$2" in
    *pytest_timeout* | *xdist*) exit 1 ;;
    *cuda.is_available*) echo yes ;;
    *) echo "Fake H200" ;;
    esac ;;
-)
    cat >/dev/null
    echo "[1/4] nvcc ... ptxas info : Used 96 registers"
    exit "${FAKE_EXT_RC:-0}" ;;
-m)
    case "$2" in
    pytest)
        echo "tests/measure/test_x.py::test_one PASSED"
        echo "tests/measure/test_x.py::test_two PASSED"
        exit "${FAKE_PYTEST_RC:-0}" ;;
    pip) exit 0 ;;
    invbench)
        case "$3" in
        env) echo '{"torch": "2.11.0"}' ;;
        run | profile)
            out=""
            while [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done
            mkdir -p "$out"
            for f in results.parquet samples.parquet meta.json; do echo x >"$out/$f"; done ;;
        esac ;;
    esac ;;
esac
exit 0
"""


def _fake_python(tmp_path: Path) -> dict[str, str]:
    shim = tmp_path / "python"
    shim.write_text(FAKE_PYTHON)
    shim.chmod(0o755)
    env = dict(os.environ, PYTHON=str(shim), FAKE_CALLS=str(tmp_path / "calls"))
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    return env


def _run(script: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=120
    )


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
@pytest.mark.parametrize("script", [FIRST_LIGHT, GPU_CHECK])
def test_without_a_gpu_one_line_and_exit_2(tmp_path: Path, script: Path) -> None:
    env = dict(os.environ, PYTHON=sys.executable)
    out = tmp_path / "out"
    proc = _run(script, str(out), env=env)
    assert proc.returncode == 2
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0], lines
    assert not out.exists()


def test_first_light_needs_an_out_folder(tmp_path: Path) -> None:
    proc = _run(FIRST_LIGHT, env=_fake_python(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("first-light: usage:")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_first_light_runs_every_step_into_one_log_and_few_files(tmp_path: Path) -> None:
    env = _fake_python(tmp_path)
    out = tmp_path / "out"
    proc = _run(FIRST_LIGHT, str(out), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = _files(out)
    assert files == ["env.json", "first-light.log", "slice.tar.gz", "summary.txt"]
    assert len(files) <= MAX_FILES
    log = (out / "first-light.log").read_text()
    order = [log.index(f"== {name} (limit") for name in
             ("extension", "gpu-tests", "timer-tests", "timing-slice")]  # fmt: skip
    assert order == sorted(order)  # correctness first, the timing slice last
    assert "ptxas info" in log  # the compiler's own output is in the log
    assert "test_one PASSED" in log  # a line per test
    assert "pytest-timeout not installed" in log
    summary = (out / "summary.txt").read_text()
    assert summary.count("passed in") == 4
    calls = (tmp_path / "calls").read_text()
    assert "--timeout" not in calls  # no plugin used that the machine lacks
    slice_run = next(line for line in calls.splitlines() if " run " in f" {line} ")
    assert "--mode fwd" in slice_run and "compile" not in slice_run
    assert slice_run.count("--case") == 2 and "--dtype float32 --dtype bfloat16" in slice_run
    with tarfile.open(out / "slice.tar.gz") as tar:
        assert "slice/results.parquet" in tar.getnames()


def test_first_light_goes_on_after_a_failing_step_and_exits_1(tmp_path: Path) -> None:
    env = dict(_fake_python(tmp_path), FAKE_EXT_RC="1")
    out = tmp_path / "out"
    proc = _run(FIRST_LIGHT, str(out), env=env)
    assert proc.returncode == 1
    summary = (out / "summary.txt").read_text()
    assert "extension: FAILED, exit 1" in summary
    assert "timing-slice: passed" in summary


def test_first_light_skips_what_its_time_budget_cannot_hold(tmp_path: Path) -> None:
    env = dict(_fake_python(tmp_path), BUDGET_S="5")
    out = tmp_path / "out"
    proc = _run(FIRST_LIGHT, str(out), env=env)
    assert proc.returncode == 1
    assert (out / "summary.txt").read_text().count("SKIPPED") == 4


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("tests", ["env.json", "tests.log"]),
        ("ops", ["env.json", "ops-fwd-bwd.tar.gz", "ops-fwd.tar.gz", "ops.log"]),
        (
            "levels",
            ["env.json", "layers.tar.gz", "levels.log", "models.tar.gz", "profile-layer1.tar.gz"],
        ),
    ],
)
def test_each_gpu_check_phase_leaves_at_most_8_files_outside_the_tree(
    tmp_path: Path, phase: str, expected: list[str]
) -> None:
    env = _fake_python(tmp_path)
    proc = _run(GPU_CHECK, "", phase, env=env)  # no OUT: the default
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (out,) = (tmp_path / "tmp" / "invbench-gpu-check").iterdir()
    assert _files(out) == expected and len(expected) <= MAX_FILES
    assert not (ROOT / "results" / "gpu" / "check").exists()


def test_each_gpu_check_phase_fits_8_minutes() -> None:
    text = GPU_CHECK.read_text()
    budget = int(re.search(r"BUDGET_S=\$\{BUDGET_S:-(\d+)\}", text).group(1))  # type: ignore[union-attr]
    assert budget <= 8 * 60 - 15  # set-up (pip, invbench env) takes the rest
    for phase in ("tests", "ops", "levels"):
        block = text.split(f"begin {phase}\n", 1)[1].split("\nfi\n", 1)[0]
        limits = [int(n) for n in re.findall(r"^\s*(?:step|run|profile) (\d+) ", block, re.M)]
        assert limits and sum(limits) <= budget, (phase, limits)
