"""Calibration of the verdicts on simulated runs, and the pieces they are made of."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from invbench.analysis.compare import Verdict, compare_dirs
from invbench.analysis.verdicts import (
    ComparePolicy,
    Correction,
    evidence_from_logs,
    judge,
    run_evidence,
)
from invbench.core.stats import (
    benjamini_hochberg,
    bootstrap_ratio_ci,
    holm,
    variance_prior,
)
from tests.analysis.simulate import simulate_comparisons
from tests.compare_helpers import row, set_meta, write_dir

CHANGES = {Verdict.SLOWER, Verdict.FASTER}

# The noise of the calibration: a run's median off by 1.5% (sd, log scale) from process
# to process, samples 5% (half-normal, a tenth of them 3x), 50 samples a run, 20 rows,
# and the defaults of `invbench ab` (3 runs a side, threshold 5%, alpha 0.01 Holm).
# docs/compare.md has the rates at other noise levels and numbers of runs.
ROWS, RUNS, SAMPLES, BETWEEN, WITHIN = 20, 3, 50, 0.015, 0.05


def test_false_alarms_stay_under_alpha_at_the_defaults() -> None:
    reps = 400
    results = simulate_comparisons(7, reps, RUNS, SAMPLES, BETWEEN, WITHIN, [1.0] * ROWS)
    alarms = sum(any(j.verdict in CHANGES for j in rep) for rep in results)
    # family-wise: at most alpha = 1% of whole comparisons with any false change
    # (binomial: 8 of 400 has probability < 0.5% at a true rate of 1%)
    assert alarms <= 8, f"{alarms} of {reps} comparisons called a change that is not there"
    same = sum(j.verdict is Verdict.SAME for rep in results for j in rep)
    assert same > 0.3 * reps * ROWS  # and "same" is reachable, not everything uncertain


def test_power_for_a_ten_percent_change_at_the_defaults() -> None:
    reps = 200
    shift = [1.1] + [1.0] * (ROWS - 1)
    results = simulate_comparisons(11, reps, RUNS, SAMPLES, BETWEEN, WITHIN, shift)
    called = sum(rep[0].verdict is Verdict.SLOWER for rep in results)
    assert called >= 0.8 * reps, f"a 10% slowdown called in {called} of {reps}"
    alarms = sum(any(j.verdict in CHANGES for j in rep[1:]) for rep in results)
    assert alarms <= 6


def test_sample_level_tests_alone_would_raise_alarms() -> None:
    # the same simulated null read with the runs' samples pooled as if independent
    # (one run a side, between-run noise ignored): what the old verdict did
    rng = np.random.default_rng(3)
    alarms = 0
    for _ in range(50):
        base = np.exp(rng.normal(0, BETWEEN) + np.abs(rng.normal(0, WITHIN, 300)))
        head = np.exp(rng.normal(0, BETWEEN) + np.abs(rng.normal(0, WITHIN, 300)))
        from scipy.stats import mannwhitneyu

        alarms += mannwhitneyu(base, head).pvalue < 0.01
    assert alarms > 10  # pseudo-replication: most "significant" differences are runs


def test_one_noisy_row_keeps_its_own_variance() -> None:
    policy = ComparePolicy()
    rng = np.random.default_rng(5)
    evidence = []
    for _ in range(19):  # quiet rows: 1% between runs
        b, h = rng.normal(0, 0.01, 3), rng.normal(0, 0.01, 3)
        evidence.append(evidence_from_logs(b, h, 1e-6, 300, 300, policy))
    # a row whose runs scatter by 30%, with a 20% gap between the sides
    noisy = evidence_from_logs(
        np.array([0.0, 0.3, -0.3]), np.array([0.48, 0.18, -0.12]), 1e-6, 300, 300, policy
    )
    j = judge([*evidence, noisy], policy)[-1]
    assert j.verdict is Verdict.UNCERTAIN and j.mde > 0.3


def test_holm_and_bh_adjust_known_values() -> None:
    p = [0.01, 0.04, 0.03, np.nan, 0.005]
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, np.nan, 0.02])
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, np.nan, 0.02])
    policy = ComparePolicy(correction=Correction.NONE)
    ev = evidence_from_logs(np.zeros(3), np.full(3, 0.0), 1e-4, 30, 30, policy)
    assert judge([ev], policy)[0].p_adjusted == judge([ev], policy)[0].p_value


def test_variance_prior_pools_alike_rows_and_spares_unlike_ones() -> None:
    rng = np.random.default_rng(2)
    alike = 0.02**2 * rng.chisquare(4, 50) / 4
    s0, d0 = variance_prior(alike, [4] * 50)
    assert 0.015**2 < s0 < 0.025**2 and d0 > 20
    unlike = alike * np.exp(rng.normal(0, 1.5, 50))
    assert variance_prior(unlike, [4] * 50)[1] < 5
    assert variance_prior(alike[:2], [4, 4]) == (pytest.approx(np.nan, nan_ok=True), 0.0)


def test_bootstrap_over_runs_holds_run_to_run_spread() -> None:
    rng = np.random.default_rng(4)
    base = [1.0 + rng.normal(0, 0.01, 200) for _ in range(3)]
    head = [m + rng.normal(0, 0.01, 200) for m in (1.0, 1.2, 0.9)]
    lo, hi = bootstrap_ratio_ci(head, base)
    flat = bootstrap_ratio_ci(np.concatenate(head), np.concatenate(base))
    assert hi - lo > 3 * (flat[1] - flat[0])  # runs resampled: far wider than samples alone
    assert bootstrap_ratio_ci([np.full(5, 2.0)], [np.full(5, 1.0)]) == (2.0, 2.0)
    assert all(np.isnan(bootstrap_ratio_ci([np.array([1.0])], base)))


def test_measured_differently_is_not_comparable(tmp_path: Path) -> None:
    samples = list(np.linspace(1.0, 1.1, 30))
    base = write_dir(tmp_path / "b", [(row("a", cache_mode="cold"), samples), (row("b"), samples)])
    head = write_dir(tmp_path / "h", [(row("a", cache_mode="hot"), samples), (row("b"), samples)])
    c = compare_dirs(base, head)
    verdicts = {r.key["backend"]: r for r in c.rows}
    assert verdicts["a"].verdict is Verdict.NOT_COMPARABLE
    assert "cache mode cold (base) vs hot (head)" in verdicts["a"].note
    assert verdicts["b"].verdict is Verdict.UNCERTAIN
    set_meta(head, torch_threads=1, run={"policy": {"samples": 50}})
    set_meta(base, torch_threads=2, run={"policy": {"samples": None}})
    notes = {r.note for r in compare_dirs(base, head).rows}
    assert all("thread count 2 (base) vs 1 (head)" in n for n in notes)
    assert all("stopping policy" in n for n in notes)


def test_cpu_runs_timed_under_the_pinned_allocator_are_not_comparable(tmp_path: Path) -> None:
    samples = list(np.linspace(1.0, 1.1, 30))
    base = write_dir(tmp_path / "b", [(row("a"), samples)], {"run": {"device": "cpu"}})
    head = write_dir(tmp_path / "h", [(row("a"), samples)], {"run": {"device": "cpu"}})
    assert compare_dirs(base, head).rows[0].verdict is Verdict.UNCERTAIN  # both pinned
    set_meta(head, run={"device": "cpu", "allocator": "default"})
    (r,) = compare_dirs(base, head).rows
    assert r.verdict is Verdict.NOT_COMPARABLE
    assert "allocator mmap and trim thresholds pinned to 64 KiB (base) vs default" in r.note
    set_meta(base, run={"device": "cuda:0"})  # a GPU run never had it pinned
    set_meta(head, run={"device": "cuda:0", "allocator": "default"})
    assert compare_dirs(base, head).rows[0].verdict is Verdict.UNCERTAIN


def test_throttled_change_is_downgraded(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)

    def side(path: Path, factor: float, throttled: bool) -> Path:
        runs = [list(factor * (1 + rng.normal(0, 0.005, 60))) for _ in range(3)]
        first = write_dir(path, [(row("a", throttled=throttled), runs[0])])
        from invbench.storage.merge import merge_runs
        from invbench.storage.results import load_results

        others = [write_dir(path.with_name(f"{path.name}{i}"), [(row("a"), r)]) for i, r in
                  enumerate(runs[1:])]  # fmt: skip
        sets = [load_results(p) for p in (first, *others)]
        return merge_runs(sets, path.with_name(path.name + "-merged"), {})

    base = side(tmp_path / "b", 1.0, False)
    assert compare_dirs(base, side(tmp_path / "h", 1.3, False)).rows[0].verdict is Verdict.SLOWER
    hot = compare_dirs(base, side(tmp_path / "t", 1.3, True)).rows[0]
    assert hot.verdict is Verdict.UNCERTAIN and "not called: head throttled" in hot.note


def test_sides_in_different_process_states_are_not_a_change() -> None:
    # Run medians (ms) of k3-g2/unfold/fwd in an A/A run (the same commit on both sides)
    # on this 2-core machine under heavy load: every head process landed in a fast state.
    # A base run in a third state shows the sides' own runs differ more than the sides do.
    rng = np.random.default_rng(9)
    base = [m * (1 + rng.normal(0, 0.01, 100)) for m in (0.0755, 0.1573, 0.0797)]
    head = [m * (1 + rng.normal(0, 0.01, 100)) for m in (0.0434, 0.0447, 0.0436)]
    policy = ComparePolicy()
    evidence = [
        evidence_from_logs(
            np.log([np.median(r) for r in base]),
            np.log([np.median(r) for r in head]),
            1e-5,
            300,
            300,
            policy,
        )
    ]
    # judged beside the three other rows of that A/A run, and beside nineteen quiet rows
    others = [evidence_from_logs(rng.normal(0, 0.05, 3), rng.normal(0, 0.05, 3), 1e-4, 300, 300,
                                 policy) for _ in range(3)]  # fmt: skip
    quiet = [evidence_from_logs(rng.normal(0, 0.01, 3), rng.normal(0, 0.01, 3), 1e-6, 300, 300,
                                policy) for _ in range(19)]  # fmt: skip
    for rows in (evidence + others, evidence + quiet):
        assert judge(rows, policy)[0].verdict is Verdict.UNCERTAIN
    # the same gap with runs that agree on each side is a change
    base = [m * (1 + rng.normal(0, 0.01, 100)) for m in (0.0755, 0.0770, 0.0797)]
    tight = run_evidence(base, head, policy)
    assert judge([tight, *quiet], policy)[0].verdict is Verdict.FASTER


# -- lockstep pairs (invbench ab's default) -------------------------------------------
# A machine that flips between a fast and a 1.8x slower state (what a busy hyperthread
# sibling does here), seen alike by both processes of a pair round by round; each
# process off its level by 1.5% (what a process is dealt once both sides share CPUs);
# 40 rounds of 10 samples a side, half-normal 5% sample noise; 3 pairs, 20 rows.
PAIRS, LOTTERY = 3, 0.015


def test_lockstep_pairs_raise_no_false_alarm_at_the_defaults() -> None:
    from tests.analysis.simulate import simulate_lockstep_comparisons

    reps = 300
    results = simulate_lockstep_comparisons(5, reps, PAIRS, [1.0] * ROWS, lottery_cv=LOTTERY)
    alarms = sum(any(j.verdict in CHANGES for j in rep) for rep in results)
    assert alarms <= 6, f"{alarms} of {reps} lockstep comparisons called a change"
    same = sum(j.verdict is Verdict.SAME for rep in results for j in rep)
    assert same > 0.5 * reps * ROWS


def test_lockstep_pairs_call_a_ten_percent_change() -> None:
    from tests.analysis.simulate import simulate_lockstep_comparisons

    reps = 100
    shift = [1.1] + [1.0] * (ROWS - 1)
    results = simulate_lockstep_comparisons(6, reps, PAIRS, shift, lottery_cv=LOTTERY)
    called = sum(rep[0].verdict is Verdict.SLOWER for rep in results)
    assert called >= 0.8 * reps, f"a 10% slowdown called in {called} of {reps}"
    assert sum(any(j.verdict in CHANGES for j in rep[1:]) for rep in results) <= 2


def test_the_same_runs_judged_unpaired_cannot_see_the_change() -> None:
    # what pairing buys: the state noise is shared within a pair, and only pairing sees it
    from tests.analysis.simulate import simulate_lockstep_pair

    rng = np.random.default_rng(8)
    runs = [simulate_lockstep_pair(rng, 1.0, 1.1, lottery_cv=LOTTERY) for _ in range(PAIRS)]
    base, head = [b for b, _ in runs], [h for _, h in runs]
    policy = ComparePolicy()
    paired = judge([run_evidence(base, head, policy, paired=True)], policy)[0]
    unpaired = judge([run_evidence(base, head, policy)], policy)[0]
    assert paired.verdict is Verdict.SLOWER and 1.05 < paired.ratio < 1.15
    assert paired.mde < unpaired.mde


def test_pairing_needs_one_ab_run_and_its_two_sides() -> None:
    from invbench.analysis.compare import is_paired

    side = {"pairing": "abc", "side": "base"}
    assert is_paired({"ab": side}, {"ab": {**side, "side": "head"}})
    assert not is_paired({"ab": side}, {"ab": {**side, "side": "head", "pairing": "xyz"}})
    assert not is_paired({"ab": side}, {"ab": side})  # two bases of one run
    assert not is_paired({"ab": {**side, "pairing": None}}, {"ab": {"side": "head"}})
    assert not is_paired({}, {})


def test_pairs_that_happen_to_agree_do_not_earn_their_samples_degrees_of_freedom() -> None:
    """Three pairs of a noisy row, 5%, 8% and 11% faster by chance (a null `ab` saw
    k3-g2 compile fwd+bwd so, 8% on average; over 36 null pairs that row's pair-to-pair
    sd was 5%). Its pairs scatter less than its noisy samples say; that is no licence to
    judge it on the samples' many degrees of freedom, beside rows whose pairs scatter
    from 1% to 5% (a prior on few degrees of freedom, as in that run)."""
    policy = ComparePolicy()
    chunks = 16  # matched_log_ratio's slices: 50 samples each here

    def pair(shift: float, spread: float) -> tuple[np.ndarray, np.ndarray]:
        # slice i of head is shift * exp(+-spread) times base: the median slice ratio is
        # exactly shift, and the slices scatter by spread
        signs = np.resize([1.0, -1.0], chunks)
        head = np.repeat(0.5 * shift * np.exp(spread * signs), 50)
        return np.full(chunks * 50, 0.5), head

    noisy = [pair(float(np.exp(d)), 0.075) for d in (-0.05, -0.08, -0.11)]
    evidence = [run_evidence([b for b, _ in noisy], [h for _, h in noisy], policy, paired=True)]
    rng = np.random.default_rng(21)
    for sd in np.linspace(0.01, 0.05, 19):
        quiet = [pair(float(np.exp(rng.normal(0.0, sd))), 0.01) for _ in range(3)]
        evidence.append(
            run_evidence([b for b, _ in quiet], [h for _, h in quiet], policy, paired=True)
        )
    first = judge(evidence, policy)[0]
    assert evidence[0].s2 < evidence[0].within  # the pairs agree better than the samples
    assert 0.91 < first.ratio < 0.93
    assert first.verdict is Verdict.UNCERTAIN, first


def test_the_same_samples_on_both_sides_are_the_same_however_noisy() -> None:
    # a result compared with its copy: three runs whose medians spread 2x, where no
    # 5% equivalence could be shown from the statistics alone
    rng = np.random.default_rng(11)
    runs = [rng.normal(1.0, 0.05, 40) * scale for scale in (1.0, 1.4, 2.0)]
    policy = ComparePolicy()
    head = [r.copy() for r in runs]
    j = judge([run_evidence(runs, head, policy)], policy)[0]
    assert j.verdict is Verdict.SAME and j.ratio == 1.0, j
    assert j.note == "the same samples"
    assert judge([run_evidence(runs, head, policy, paired=True)], policy)[0].verdict is (
        Verdict.SAME
    )
    # one run a side is not judged, copy or not
    one = judge([run_evidence(runs[:1], head[:1], policy)], policy)[0]
    assert one.verdict is Verdict.UNCERTAIN
    # one sample different: judged by the statistics again (here: too noisy to tell)
    head = [r.copy() for r in runs]
    head[2][0] *= 1.01
    assert judge([run_evidence(runs, head, policy)], policy)[0].verdict is Verdict.UNCERTAIN
