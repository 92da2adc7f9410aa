"""invbench compare: verdicts on synthetic samples, real injected regressions, outputs, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from invbench.analysis.compare import (
    CompareError,
    ComparePolicy,
    Verdict,
    compare_dirs,
    compare_runs,
    compare_samples,
    wording,
)
from invbench.cli.app import main
from invbench.core.spec import Mode
from invbench.render.compare_render import markdown, to_json
from invbench.running.bench import RunRequest, execute, plan_run
from tests.compare_helpers import SPIN_ENV, row, set_meta, spin_registry, write_dir

RNG = np.random.default_rng(12345)


def noisy(n: int, median: float = 1.0, sigma: float = 0.02) -> np.ndarray:
    return median * RNG.lognormal(0.0, sigma, n)


# -- verdicts on synthetic samples --------------------------------------------------


def test_identical_distributions_are_same() -> None:
    base = noisy(200)
    assert compare_samples(base, base.copy()).verdict is Verdict.SAME
    assert compare_samples(base, noisy(200)).verdict is Verdict.SAME


def test_clean_20_percent_shift_is_slower_and_worded() -> None:
    result = compare_samples(noisy(200), noisy(200, 1.2))
    assert result.verdict is Verdict.SLOWER
    assert result.ci_low > 1.15 and result.ci_high < 1.25
    assert result.p_value < 1e-6
    assert wording(result.verdict, result.ratio) == f"{result.ratio:.2f}x slower"
    back = compare_samples(noisy(200, 1.2), noisy(200))
    assert back.verdict is Verdict.FASTER
    assert wording(back.verdict, back.ratio).endswith("x faster")


def test_three_percent_shift_is_same_at_five_percent() -> None:
    result = compare_samples(noisy(300, sigma=0.01), noisy(300, 1.03, sigma=0.01))
    assert result.p_value < 0.01  # the shift is real...
    assert result.verdict is Verdict.SAME  # ...but below the threshold
    # at a 2% threshold the same samples are a change
    strict = compare_samples(
        noisy(300, sigma=0.01), noisy(300, 1.03, sigma=0.01), ComparePolicy(threshold=0.02)
    )
    assert strict.verdict is Verdict.SLOWER


def test_heavy_noise_is_uncertain() -> None:
    result = compare_samples(noisy(60, sigma=0.8), noisy(60, 1.1, sigma=0.8))
    assert result.verdict is Verdict.UNCERTAIN
    assert result.ci_low < 1.05 or result.ci_high > 1.05


def test_too_few_samples_is_uncertain() -> None:
    assert compare_samples([1.0, 1.0], [2.0, 2.0]).verdict is Verdict.UNCERTAIN
    assert compare_samples([], [1.0] * 10).verdict is Verdict.UNCERTAIN


def test_one_slow_process_does_not_make_a_change() -> None:
    # base: two runs, one of them in a 40% slow mode; head: two normal runs
    base = [noisy(150), noisy(150, 1.4)]
    head = [noisy(150), noisy(150)]
    pooled = compare_samples(np.concatenate(base), np.concatenate(head))
    by_run = compare_runs(base, head)
    assert pooled.verdict is Verdict.FASTER  # what a sample-level test alone would say
    assert by_run.verdict is Verdict.UNCERTAIN
    # both head runs slower, but they disagree with each other by more than the gap
    spread = compare_runs([noisy(150), noisy(150, 1.02)], [noisy(150, 1.12), noisy(150, 1.4)])
    assert spread.verdict is Verdict.UNCERTAIN
    # a shift every run agrees on is still called
    assert compare_runs([noisy(150), noisy(150)], [noisy(150, 1.25), noisy(150, 1.25)]).verdict is (
        Verdict.SLOWER
    )


def test_two_runs_a_side_need_a_gap_beyond_run_to_run_noise() -> None:
    # every head run 7-9% faster than every base run, runs of one side 2-3% apart: with
    # two processes a side that is within what process-to-process variation does
    base = [noisy(150, 1.00, sigma=0.005), noisy(150, 1.03, sigma=0.005)]
    head = [noisy(150, 0.92, sigma=0.005), noisy(150, 0.94, sigma=0.005)]
    assert compare_runs(base, head).verdict is Verdict.UNCERTAIN
    # the same gap with runs that agree closely is a change
    base = [noisy(150, 1.000, sigma=0.005), noisy(150, 1.002, sigma=0.005)]
    head = [noisy(150, 0.920, sigma=0.005), noisy(150, 0.921, sigma=0.005)]
    assert compare_runs(base, head).verdict is Verdict.FASTER
    # and three runs a side make the first gap callable
    base = [noisy(150, m, sigma=0.005) for m in (1.00, 1.03, 1.01)]
    head = [noisy(150, m, sigma=0.005) for m in (0.92, 0.94, 0.93)]
    assert compare_runs(base, head).verdict is Verdict.FASTER


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
        ],
    )
    head = write_dir(
        tmp_path / "head",
        [
            (row("a"), samples),
            (row("b", "error", reason="RuntimeError: boom"), []),
            (row("c", "skipped", reason="no CUDA"), []),
            (row("e"), samples),
        ],
    )
    c = compare_dirs(base, head)
    verdicts = {r.key["backend"]: r.verdict for r in c.rows}
    assert verdicts == {
        "a": Verdict.SAME,
        "b": Verdict.BROKEN,
        "c": Verdict.NOT_OK,
        "d": Verdict.REMOVED,
        "e": Verdict.ADDED,
    }
    broken = next(r for r in c.rows if r.key["backend"] == "b")
    assert "boom" in broken.note and broken.ratio is None
    assert c.headline() == "1 broken, 1 added, 1 removed, 1 not ok, 1 same"
    assert [r.key["backend"] for r in c.regressions()] == ["b"]
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


def run_spin(out: Path, factor: float, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(SPIN_ENV, str(factor))
    registry = spin_registry()
    request = RunRequest(suite="smoke", device="cpu", modes=(Mode.FWD,), samples=60)
    suite, plan = plan_run(request, registry)
    rows = execute(suite, plan, registry, out)
    assert {r.status for r in rows} == {"ok"}
    return out


@pytest.fixture(scope="module")
def spin_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two real runs of the smoke suite: normal, then the spin backend 25% slower."""
    root = tmp_path_factory.mktemp("spin")
    with pytest.MonkeyPatch.context() as mp:
        base = run_spin(root / "base", 1.0, mp)
        head = run_spin(root / "head", 1.25, mp)
    return base, head


def test_injected_regression_is_slower_and_fails_the_gate(
    spin_runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, head = spin_runs
    c = compare_dirs(base, head)
    by_backend: dict[str, set[Verdict]] = {}
    for r in c.rows:
        by_backend.setdefault(r.key["backend"], set()).add(r.verdict)
    assert by_backend == {"spin": {Verdict.SLOWER}, "steady": {Verdict.SAME}}
    for r in c.rows:
        if r.key["backend"] == "spin":
            assert r.ratio is not None and 1.15 < r.ratio < 1.4
            assert r.change == f"{r.ratio:.2f}x slower"
    pair = ["compare", str(base), str(head)]
    assert main([*pair, "--fail-on-regression"]) == 1
    assert main([*pair, "--fail-on-regression", "--backend", "steady"]) == 0
    assert main(pair) == 0  # no gate asked for
    capsys.readouterr()

    md_file = tmp_path / "comment.md"
    assert main([*pair, "--format", "markdown", "--output", str(md_file)]) == 0
    text = md_file.read_text()
    assert text.splitlines()[0] == "**invbench**: 2 slower, 2 same"
    changed, folded = text.split("<details>")
    assert changed.count("x slower |") == 2 and "steady" not in changed
    assert folded.count("| steady |") == 2 and "</details>" in folded

    assert main([*pair, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["slower"] == 2 and data["counts"]["same"] == 2
    assert {r["verdict"] for r in data["rows"] if r["key"]["backend"] == "spin"} == {"slower"}

    assert main(pair) == 0
    assert "2 slower, 2 same" in capsys.readouterr().out


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
