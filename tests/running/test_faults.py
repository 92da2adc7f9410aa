"""Faults: isolated workers turn crashes, hangs and OOMs into rows; --resume finishes a run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from invbench.backends.registry import Registry
from invbench.cli.app import app
from invbench.core.spec import Dtype, Mode
from invbench.core.stats import StopPolicy
from invbench.running.engine import Engine
from invbench.running.plan import RunPlan
from invbench.storage.results import KEY_COLUMNS, ResultWriter, load_results
from tests.measure_backends import TINY, FaultBackend, SpinBackend

ROOT = Path(__file__).resolve().parents[2]
FAULTS = {  # backend -> (status, words the reason must contain)
    "segfault": ("crashed", "SIGSEGV"),
    "abort": ("crashed", "SIGABRT"),
    "hang": ("timeout", "no result within"),
    "oom": ("oom", "out of memory"),
    "cuda-error": ("crashed", "CUDA error"),
}
HANG_TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def isolated_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One isolated run: a good backend first, every fault, and a good backend last."""
    registry = Registry()
    registry.register(SpinBackend("good-first", ms=0.2))
    for fault in FAULTS:
        registry.register(FaultBackend(fault, fault))
    registry.register(SpinBackend("good-last", ms=0.2))
    plan = RunPlan(
        cases=(TINY,),
        backends=("good-first", *FAULTS, "good-last"),
        dtypes=(Dtype.FLOAT32,),
        modes=(Mode.FWD,),
        device=torch.device("cpu"),
        policy=StopPolicy(samples=5),
        warmup_ms=1.0,
        isolate=True,
        timeout_s=HANG_TIMEOUT_S,
    )
    directory = tmp_path_factory.mktemp("isolated")
    Engine(plan, registry, ResultWriter(directory)).run()
    return directory


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_becomes_a_row(isolated_run: Path, fault: str) -> None:
    rows = load_results(isolated_run).rows.set_index("backend")
    status, words = FAULTS[fault]
    assert rows.loc[fault, "status"] == status
    assert words.lower() in rows.loc[fault, "reason"].lower()


def test_the_run_goes_on_and_good_rows_are_intact(isolated_run: Path) -> None:
    result = load_results(isolated_run)
    rows = result.rows.set_index("backend")
    assert list(result.rows["backend"]) == ["good-first", *FAULTS, "good-last"]
    for name in ("good-first", "good-last"):
        assert rows.loc[name, "status"] == "ok"
        assert rows.loc[name, "n_samples"] == 5
        assert (result.samples["backend"] == name).sum() == 5


# -- resume ------------------------------------------------------------------------------

SUITE = """
schema_version = 1
description = "resume test"
[run]
batch = 1
dtypes = ["float32"]
modes = ["fwd"]
warmup_ms = 2
[case_defaults]
channels = 4
height = 10
kernel_size = 3
groups = 2
"""


def _rows(directory: Path) -> int:
    try:
        return len(load_results(directory).rows)
    except Exception:  # not written yet
        return 0


def test_resume_after_a_kill_finishes_without_duplicates(tmp_path: Path) -> None:
    # eight cases: the kill, up to a poll after the first row, lands well before the last
    # row on a fast host too (the run measures a case in tens of milliseconds)
    cases = "".join(f'[[cases]]\nname = "c{i}"\n' for i in range(8))
    suite = tmp_path / "resume.toml"
    suite.write_text(SUITE + cases)
    out = tmp_path / "run"
    args = ["--suite", str(suite), "--device", "cpu", "--out", str(out), "--samples", "20"]
    args += ["--backend", "unfold", "--backend", "dwconv"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "invbench", "run", *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _rows(out) == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = load_results(out)  # a kill at any moment leaves a readable directory
    total = 8 * 2
    assert 0 < len(first.rows) < total, "the run ended before it could be killed"
    assert json.loads((out / "meta.json").read_text())["run"]["status"] == "running"

    done = CliRunner().invoke(app, ["run", "--resume", str(out)])  # in-process: saves a start
    assert done.exit_code == 0, done.output
    final = load_results(out)
    keys = [tuple(r) for r in final.rows[list(KEY_COLUMNS)].itertuples(index=False)]
    assert len(keys) == total and len(set(keys)) == total
    assert set(final.rows["status"]) == {"ok"}
    # rows measured before the kill are kept as they were, not measured again
    kept = final.rows.iloc[: len(first.rows)].reset_index(drop=True)
    assert kept["median_ms"].tolist() == first.rows["median_ms"].tolist()
    assert final.samples.groupby(list(KEY_COLUMNS)).size().tolist() == [20] * total
    meta = json.loads((out / "meta.json").read_text())
    assert meta["run"]["status"] == "complete" and len(meta["run"]["resumed"]) == 1
    assert meta["ceilings"]["copy"]["gbps"] > 0
    assert meta["telemetry"]["source"].startswith("unavailable")
    assert set(final.rows["telemetry"]) == {meta["telemetry"]["source"]}
    assert final.rows["roofline_frac"].notna().all()


def test_resume_of_a_directory_without_a_run_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--resume", str(tmp_path)])
    assert result.exit_code == 2
    assert "not an invbench run directory" in result.output


@pytest.mark.parametrize(
    ("option", "value"), [("--target-ci", "1.5"), ("--max-time", "0"), ("--timeout", "-1")]
)
def test_bad_sampling_options_are_usage_errors(option: str, value: str) -> None:
    result = CliRunner().invoke(app, ["run", "--suite", "smoke", "--device", "cpu", option, value])
    assert result.exit_code == 2
    assert option in result.output
