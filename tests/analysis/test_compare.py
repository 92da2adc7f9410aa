"""invbench compare: verdicts on synthetic samples, real injected regressions, outputs, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from invbench.analysis.compare import CompareError, ComparePolicy, Verdict, compare_dirs
from invbench.analysis.verdicts import BetweenRunNoise, Judgement, compare_runs, wording
from invbench.cli.app import main
from invbench.core.spec import Mode
from invbench.render.compare_render import markdown, subtitle, to_json
from invbench.running.bench import RunRequest, execute, plan_run
from invbench.storage.merge import merge_runs
from invbench.storage.results import ResultSet, load_results
from tests.compare_helpers import SPIN_ENV, row, set_meta, spin_registry, write_dir

RNG = np.random.default_rng(12345)


def compare_samples(base: Sequence[float], head: Sequence[float]) -> Judgement:
    """One run a side."""
    return compare_runs([np.asarray(base, dtype=float)], [np.asarray(head, dtype=float)])


def noisy(n: int, median: float = 1.0, sigma: float = 0.02) -> np.ndarray:
    return median * RNG.lognormal(0.0, sigma, n)


# -- verdicts on synthetic runs -------------------------------------------------------


def runs(k: int, median: float = 1.0, between: float = 0.01, n: int = 100) -> list[np.ndarray]:
    """k runs, each off the median by a between-run factor, with within-run noise."""
    return [noisy(n, median * float(np.exp(RNG.normal(0, between)))) for _ in range(k)]


def test_one_run_a_side_gets_no_verdict_from_samples_alone() -> None:
    # thousands of samples, a 40% gap, p ~ 0 for a sample-level test: still one process a side
    result = compare_samples(noisy(2000), noisy(2000, 1.4))
    assert result.verdict is Verdict.UNCERTAIN
    assert "one run a side" in result.note and "invbench ab" in result.note
    assert "--noise-cv" in result.note
    assert result.ratio == pytest.approx(1.4, rel=0.02)
    # a between-run spread known from elsewhere (a calibration) makes it callable
    known = BetweenRunNoise(0.02, 0, "calibration")
    assert compare_runs(noisy(200), noisy(200, 1.4), external=known).verdict is Verdict.SLOWER
    tight = BetweenRunNoise(0.01, 0, "calibration")
    assert compare_runs(noisy(200), noisy(200, 1.01), external=tight).verdict is Verdict.SAME
    # 2% between runs and one run a side cannot rule out 5%
    assert compare_runs(noisy(200), noisy(200, 1.01), external=known).verdict is (Verdict.UNCERTAIN)
    # ...but not a change within what that spread allows
    wide = BetweenRunNoise(0.2, 0, "calibration")
    assert compare_runs(noisy(200), noisy(200, 1.2), external=wide).verdict is Verdict.UNCERTAIN


def test_replicated_shift_is_slower_and_worded() -> None:
    result = compare_runs(runs(3), runs(3, 1.2))
    assert result.verdict is Verdict.SLOWER
    assert result.ci_low > 1.1 and result.ci_high < 1.3
    assert result.p_value < 1e-3
    assert wording(result.verdict, result.ratio) == f"{result.ratio:.2f}x slower"
    back = compare_runs(runs(3, 1.2), runs(3))
    assert back.verdict is Verdict.FASTER
    assert wording(back.verdict, back.ratio).endswith("x faster")


def test_small_real_shift_is_same_at_five_percent() -> None:
    base, head = runs(4, between=0.003), runs(4, 1.02, between=0.003)
    assert compare_runs(base, head).verdict is Verdict.SAME
    strict = compare_runs(base, head, ComparePolicy(threshold=0.01))
    assert strict.verdict is Verdict.SLOWER


def test_heavy_run_to_run_noise_is_uncertain_and_says_what_it_needs() -> None:
    result = compare_runs(runs(3, between=0.15), runs(3, 1.1, between=0.15))
    assert result.verdict is Verdict.UNCERTAIN
    assert result.mde > 0.1
    assert f"needs ~{result.runs_needed} runs a side" in result.note or (
        result.runs_needed >= 100 and "needs over 100 runs a side" in result.note
    )
    assert result.runs_needed > 3


def test_too_few_samples_is_uncertain() -> None:
    assert compare_samples([1.0, 1.0], [2.0, 2.0]).verdict is Verdict.UNCERTAIN
    assert compare_samples([], [1.0] * 10).verdict is Verdict.UNCERTAIN


def test_one_slow_process_does_not_make_a_change() -> None:
    # base: three runs, one of them in a 40% slow mode; head: three normal runs
    base = [noisy(150), noisy(150, 1.4), noisy(150)]
    head = [noisy(150), noisy(150), noisy(150)]
    assert compare_runs(base, head).verdict is Verdict.UNCERTAIN
    # a shift every run agrees on is still called
    assert compare_runs(runs(3), runs(3, 1.25)).verdict is Verdict.SLOWER


# -- status handling on result directories -------------------------------------------


def test_rows_not_ok_never_get_a_speed_verdict(tmp_path: Path) -> None:
    samples = list(noisy(50))
    base = write_dir(
        tmp_path / "base",
        [
            (row("a"), samples),
            (row("b"), samples),
            (row("c", "skipped", reason="no CUDA"), []),
            (row("d"), samples),
            (row("f"), samples),
            (row("g"), samples),
        ],
    )
    head = write_dir(
        tmp_path / "head",
        [
            (row("a"), samples),
            (row("b", "error", reason="RuntimeError: boom"), []),
            (row("c", "skipped", reason="no CUDA"), []),
            (row("e"), samples),
            (row("f", "crashed", reason="worker died: SIGSEGV"), []),
            (row("g", "timeout", reason="no answer in 600 s"), []),
        ],
    )
    c = compare_dirs(base, head)
    assert not c.paired and "bootstrap over runs" in subtitle(c)
    verdicts = {r.key["backend"]: r.verdict for r in c.rows}
    assert verdicts == {
        "a": Verdict.UNCERTAIN,  # one run a side
        "b": Verdict.BROKEN,
        "c": Verdict.NOT_OK,
        "d": Verdict.REMOVED,
        "e": Verdict.ADDED,
        "f": Verdict.BROKEN,
        "g": Verdict.BROKEN,
    }
    broken = next(r for r in c.rows if r.key["backend"] == "b")
    assert "boom" in broken.note and broken.ratio is None
    assert c.headline() == "3 broken, 1 added, 1 removed, 1 uncertain, 1 not ok"
    assert [r.key["backend"] for r in c.regressions()] == ["b", "f", "g"]
    assert c.regressions(["a"]) == []


@pytest.mark.parametrize("status", ["error", "incorrect", "oom", "crashed", "timeout"])
def test_a_failed_head_row_is_broken_and_fails_the_gate(tmp_path: Path, status: str) -> None:
    samples = list(noisy(50))
    base = write_dir(tmp_path / "base", [(row("a"), samples), (row("b"), samples)])
    head = write_dir(
        tmp_path / "head",
        [(row("a"), samples), (row("b", status, median_ms=None, reason="worker died"), [])],
    )
    c = compare_dirs(base, head)
    assert {r.key["backend"]: r.verdict for r in c.rows}["b"] is Verdict.BROKEN
    assert [r.key["backend"] for r in c.regressions()] == ["b"]
    assert main(["compare", str(base), str(head), "--fail-on-regression"]) == 1
    assert main(["compare", str(base), str(head), "--fail-on-regression", "--backend", "a"]) == 0


def test_schema_mismatch_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write_dir(tmp_path / "base", [(row("a"), list(noisy(20)))])
    head = write_dir(tmp_path / "head", [(row("a"), list(noisy(20)))])
    set_meta(head, schema_version=2)
    with pytest.raises(CompareError, match="schema"):
        compare_dirs(base, head)
    assert main(["compare", str(base), str(head)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "schema 1" in err and "schema 2" in err


def test_runs_on_different_devices_are_compared_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two CPU-made result sets relabelled as two GPU models.
    base = write_dir(tmp_path / "base", [(replace(row("a"), device_name="GPU-A"), noisy(20))])
    head = write_dir(tmp_path / "head", [(replace(row("a"), device_name="GPU-B"), noisy(20))])
    with pytest.raises(CompareError, match=r"GPU-A.*GPU-B.*--across-devices"):
        compare_dirs(base, head)
    assert main(["compare", str(base), str(head)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    comparison = compare_dirs(base, head, across_devices=True)
    assert [r.key["backend"] for r in comparison.rows] == ["a"]
    assert main(["compare", str(base), str(head), "--across-devices"]) == 0


def test_environment_differences_are_warned_and_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write_dir(tmp_path / "base", [(row("a"), list(noisy(20)))])
    head = write_dir(tmp_path / "head", [(row("a"), list(noisy(20)))])
    set_meta(head, torch="2.1", nvml={"devices": [{"name": "GPU", "driver": "999.1"}]})
    c = compare_dirs(base, head)
    assert any(w.startswith("torch differs: 2.0 (base) vs 2.1 (head)") for w in c.warnings)
    assert any(w.startswith("driver differs") for w in c.warnings)
    assert "torch differs" in markdown(c)
    assert json.loads(to_json(c))["warnings"] == list(c.warnings)
    assert main(["compare", str(base), str(head), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "WARNING" in captured.err and "torch differs" in captured.err


def test_cli_errors_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (
        ["compare", str(tmp_path / "missing"), str(empty)],
        ["compare", str(empty), str(empty)],
        ["compare", str(empty), str(empty), "--threshold", "-1"],
        ["export", str(empty)],
    ):
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("invbench: error:"), err


def test_cli_error_in_a_real_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "invbench", "compare", str(tmp_path / "nope"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"invbench: error: {tmp_path / 'nope'} is not a directory"
    ]


# -- a real injected regression --------------------------------------------------------


def run_spin(out: Path, factor: float, monkeypatch: pytest.MonkeyPatch) -> ResultSet:
    monkeypatch.setenv(SPIN_ENV, str(factor))
    registry = spin_registry()
    request = RunRequest(suite="smoke", device="cpu", modes=(Mode.FWD,), samples=40)
    suite, plan = plan_run(request, registry)
    rows = execute(suite, plan, registry, out)
    assert {r.status for r in rows} == {"ok"}
    return load_results(out)


@pytest.fixture(scope="module")
def spin_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three real runs a side of the smoke suite, interleaved: the spin backend 25% slower
    on head. Merged like `invbench ab` merges a side."""
    root = tmp_path_factory.mktemp("spin")
    done: dict[str, list[ResultSet]] = {"base": [], "head": []}
    with pytest.MonkeyPatch.context() as mp:
        for i, side in enumerate(("base", "head", "head", "base", "base", "head")):
            done[side].append(run_spin(root / f"{i}-{side}", 1.25 if side == "head" else 1.0, mp))
    return (
        merge_runs(done["base"], root / "base", {"side": "base"}),
        merge_runs(done["head"], root / "head", {"side": "head"}),
    )


def test_injected_regression_is_slower_and_fails_the_gate(
    spin_runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, head = spin_runs
    c = compare_dirs(base, head)
    by_backend: dict[str, set[Verdict]] = {}
    for r in c.rows:
        by_backend.setdefault(r.key["backend"], set()).add(r.verdict)
        assert (r.runs_base, r.runs_head) == (3, 3)
    assert by_backend["spin"] == {Verdict.SLOWER}, c.rows
    assert not by_backend["steady"] & {Verdict.SLOWER, Verdict.FASTER}, c.rows
    for r in c.rows:
        if r.key["backend"] == "spin":
            assert r.ratio is not None and 1.15 < r.ratio < 1.4
            assert r.change == f"{r.ratio:.2f}x slower"
            assert r.mde is not None and r.mde < 0.25
    pair = ["compare", str(base), str(head)]
    assert main([*pair, "--fail-on-regression"]) == 1
    assert main([*pair, "--fail-on-regression", "--backend", "steady"]) == 0
    assert main(pair) == 0  # no gate asked for
    capsys.readouterr()

    md_file = tmp_path / "comment.md"
    assert main([*pair, "--format", "markdown", "--output", str(md_file)]) == 0
    text = md_file.read_text()
    assert text.splitlines()[0].startswith("**invbench**: 2 slower, ")
    changed, folded = text.split("<details>")
    assert changed.count("x slower |") == 2 and "steady" not in changed
    assert folded.count("| steady |") == 2 and "</details>" in folded

    assert main([*pair, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["slower"] == 2
    assert {r["verdict"] for r in data["rows"] if r["key"]["backend"] == "spin"} == {"slower"}


def test_results_copied_compare_as_same(spin_runs: tuple[Path, Path], tmp_path: Path) -> None:
    base, _ = spin_runs
    copy = shutil.copytree(base, tmp_path / "copy")
    assert {r.verdict for r in compare_dirs(base, copy).rows} == {Verdict.SAME}


def test_different_suites_or_levels_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = list(noisy(20))
    base = write_dir(tmp_path / "base", [(row("a"), samples)])
    other_suite = write_dir(tmp_path / "suite", [(row("a", suite="smoke"), samples)])
    other_level = write_dir(tmp_path / "level", [(row("a", level="layer"), samples)])
    for head, words in ((other_suite, "suite synthetic"), (other_level, "level op")):
        with pytest.raises(CompareError, match=words):
            compare_dirs(base, head)
        assert main(["compare", str(base), str(head)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("invbench: error:"), err


def test_a_reason_both_sides_give_is_said_once(tmp_path: Path) -> None:
    reason = "triton runs on the CPU only in its interpreter"
    base = write_dir(tmp_path / "base", [(row("t", "skipped", reason=reason), [])])
    head = write_dir(tmp_path / "head", [(row("t", "skipped", reason=reason), [])])
    assert compare_dirs(base, head).rows[0].note == reason
    # a different reason on one side keeps both, labelled
    head2 = write_dir(tmp_path / "head2", [(row("t", "error", reason="boom"), [])])
    assert compare_dirs(base, head2).rows[0].note == f"base: {reason}; head: boom"
