"""Lockstep A/B runs (two worker processes, rounds alternated) and run --repeats."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from invbench.cli.app import main
from invbench.core.spec import Mode
from invbench.running.bench import RunRequest
from invbench.running.lockstep_driver import LockstepUnsupported, lockstep_config, run_pair
from invbench.running.revisions import Worker
from invbench.storage.merge import RUN_COLUMN
from invbench.storage.results import load_results


def test_a_revision_without_lockstep_runs_says_so(tmp_path: Path) -> None:
    # an older invbench: it has a CLI but no invbench.running.lockstep
    old = tmp_path / "old"
    (old / "invbench").mkdir(parents=True)
    (old / "invbench" / "__init__.py").write_text("")
    (old / "invbench" / "cli.py").write_text("def main(argv=None):\n    return 0\n")
    workers = {s: Worker(sys.executable, old, tmp_path / f"{s}.log", s) for s in ("base", "head")}
    config = lockstep_config(RunRequest(suite="smoke").to_json(), tmp_path / "x", "base", 0, 0.1)
    try:
        with pytest.raises(LockstepUnsupported, match="no lockstep runs in this revision"):
            run_pair(workers, {"base": config, "head": config}, 60.0, "pair")
    finally:
        for w in workers.values():
            w.close()


@pytest.mark.slow
def test_a_lockstep_pair_times_both_sides_together(tmp_path: Path) -> None:
    request = RunRequest(
        suite="smoke",
        backends=("unfold", "conv3x3"),
        cases=("k3-g2",),
        device="cpu",
        modes=(Mode.FWD,),
    ).to_json()
    dirs = {side: tmp_path / side for side in ("base", "head")}
    workers = {side: Worker(sys.executable, None, tmp_path / f"{side}.log", side) for side in dirs}
    try:
        run_pair(
            workers,
            {side: lockstep_config(request, dirs[side], side, 0, 0.2) for side in dirs},
            300.0,
            "pair",
        )
    finally:
        for w in workers.values():
            w.close()
    sides = {side: load_results(d) for side, d in dirs.items()}
    affinity = set()
    for side, rs in sides.items():
        ok = rs.rows[rs.rows["status"] == "ok"]
        assert sorted(ok["backend"]) == ["conv3x3", "unfold"], side
        assert rs.meta["run"]["status"] == "complete"
        assert rs.meta["run"]["lockstep"] == {"side": side, "pair": 0, "min_time_s": 0.2}
        # converged or not, every row was timed for its minimum time (0.2 s) on each side
        assert (ok["n_samples"] * ok["mean_ms"] / 1e3 > 0.1).all(), ok["n_samples"]
        assert (ok["threads"] == 1).all()  # the smoke suite's one thread
        affinity.add(tuple(rs.meta["run"]["affinity"]))
    # both sides pinned to the same CPU: a slower CPU cannot make one side look slower
    assert len(affinity) == 1 and len(next(iter(affinity))) == 1


@pytest.mark.slow
def test_run_repeats_merges_fresh_processes(tmp_path: Path) -> None:
    out = tmp_path / "r"
    args = ["run", "--suite", "smoke", "--device", "cpu", "--backend", "unfold"]
    args += ["--case", "k3-g2", "--mode", "fwd", "--samples", "5", "--repeats", "2"]
    assert main([*args, "--out", str(out)]) == 0
    rs = load_results(out)
    assert list(rs.rows["runs"]) == [2] and list(rs.rows["n_samples"]) == [10]
    assert sorted(rs.samples[RUN_COLUMN].unique()) == [0, 1]
    assert rs.meta["repeats"]["completed"] == 2
    assert {p.name for p in (out / "runs").iterdir() if p.is_dir()} == {"001", "002"}
    for run in ("001", "002"):
        assert load_results(out / "runs" / run).meta["git"] == rs.meta["git"]


def test_run_repeats_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--suite", "smoke", "--device", "cpu", "--repeats", "0"]) == 2
    assert capsys.readouterr().err.strip() == "invbench: error: --repeats must be >= 1, got 0"
    assert main(["run", "--suite", "smoke", "--device", "cpu", "--repeats", "2", "--isolate"]) == 2
    assert "cannot be combined" in capsys.readouterr().err
    assert main(["run", "--suite", "smoke", "--device", "cpu", "--threads", "0"]) == 2
    assert capsys.readouterr().err.strip() == "invbench: error: --threads must be >= 1, got 0"
    assert main(["run", "--suite", "smoke", "--device", "cpu", "--affinity", "x"]) == 2
    assert "--affinity: 'x' is not a CPU list" in capsys.readouterr().err
