"""Verdicts on matched rows: the run is the unit of inference.

Samples inside one process are not independent replicates of the code (they share
its memory layout, thread placement, clocks and neighbours), so the evidence of a
row is its runs: the log median of every run, weighted alike. Per row:

- ratio = exp(mean log head run median - mean log base run median);
- the run-to-run variance of a log run median, from what is known: the row's own
  replicates (runs of one side scattered around their mean, d = runs - 2 degrees of
  freedom), moderated by the same variance of the other rows of the comparison
  (empirical Bayes, see `variance_prior`), or a between-run CV from outside (the
  base's history on this machine, or a calibration the user gives); never less than
  the row's within-run noise of a median;
- a t-test of the difference on those degrees of freedom, with Holm (default) or
  Benjamini-Hochberg adjustment over every tested row of the comparison;
- the minimum detectable effect: the change this row would call with the given
  power at the adjusted level, and how many runs a side the threshold would need.

Paired runs (`invbench ab`'s lockstep pairs: a base and a head process timed at once,
their rounds alternated) are judged on the differences of their log medians, pair by
pair: what the machine did to a pair hit both of its runs alike, so only what differs
within pairs is noise. A pair's log ratio is taken over matched slices of its two runs
(`matched_log_ratio`): slices of time in which both saw the same machine. The test is
then a paired t-test on k - 1 degrees of freedom
(moderated the same way), and the interval is its t-interval.

With one run a side and nothing known from outside there is no estimate of the
run-to-run noise, and samples of one process cannot provide it: the row is
`uncertain`, with what it would have needed. The displayed interval is the one
bootstrap of a ratio (`invbench.core.stats.bootstrap_ratio_ci`, the figures use it
too); a change is called only when that interval excludes 1 as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import numpy as np
from scipy import stats as sps

from invbench.core.stats import (
    RunsLike,
    as_runs,
    benjamini_hochberg,
    bootstrap_ratio_ci,
    holm,
    log_median_variance,
    matched_log_ratio,
    pooled_run_variance,
    run_log_medians,
    variance_prior,
)


class CompareError(ValueError):
    """Two result sets that cannot be compared; the CLI prints it on one line and exits 2."""


class Verdict(StrEnum):
    SLOWER = "slower"
    FASTER = "faster"
    SAME = "same"
    UNCERTAIN = "uncertain"  # neither a change nor its absence can be established
    NOT_COMPARABLE = "not comparable"  # the two sides were measured differently
    BROKEN = "broken"  # ok on base, failed on head
    NOT_OK = "not ok"  # not ok on a side otherwise (skipped, or already failing on base)
    ADDED = "added"  # only on head
    REMOVED = "removed"  # only on base


class Correction(StrEnum):
    HOLM = "holm"  # family-wise error rate
    BH = "bh"  # false-discovery rate (Benjamini-Hochberg)
    NONE = "none"


@dataclass(frozen=True)
class ComparePolicy:
    threshold: float = 0.05  # smallest relative change worth calling
    alpha: float = 0.01  # significance level over all tested rows (see correction)
    correction: Correction = Correction.HOLM
    confidence: float = 0.95  # of the intervals of the ratio
    power: float = 0.8  # for the minimum detectable effect
    noise_cv: float | None = None  # a between-run CV the user measured on this machine
    n_resamples: int = 2000
    min_samples: int = 5  # fewer on a side: uncertain
    seed: int = 0  # the bootstrap is reproducible

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 10:
            raise CompareError(f"--threshold must be in (0, 10), got {self.threshold}")
        if not 0 < self.alpha < 1:
            raise CompareError(f"--alpha must be in (0, 1), got {self.alpha}")
        if self.noise_cv is not None and not 0 < self.noise_cv < 1:
            raise CompareError(f"--noise-cv must be in (0, 1), got {self.noise_cv}")


@dataclass(frozen=True)
class BetweenRunNoise:
    """Run-to-run spread of one row known from outside the two sides being compared.

    cv: standard deviation of a run's log median (about the relative spread of run
    medians); runs: how many runs it was estimated from (0: taken as exact, e.g. a
    calibration the user gives); source: where it came from, for the note.
    """

    cv: float
    runs: int = 0
    source: str = "calibration"

    @property
    def df(self) -> float:
        return math.inf if self.runs <= 0 else float(max(self.runs - 1, 1))


# Looks up the between-run noise of a row (its key columns) on the base's machine.
NoiseLookup = Callable[[Mapping[str, Any]], BetweenRunNoise | None]


@dataclass(frozen=True)
class RunEvidence:
    """What the runs of one matched row hold, before rows are weighed together."""

    ratio: float  # exp(mean log head run median - mean log base run median)
    diff: float  # log of the ratio
    k_base: int
    k_head: int
    n_base: int
    n_head: int
    s2: float  # the row's own run-to-run variance of log medians (NaN without replicates)
    # log ratio between the closest runs of the two sides in the direction of the change
    # (head's fastest over base's slowest when slower), and the log range of run medians
    # within a side, as wide as three runs would spread (the wider side): a change must
    # separate the sides by more than a side's own runs differ (0 and 0 when neither
    # side has replicates)
    gap: float
    spread: float
    df: float  # its degrees of freedom (0 without replicates)
    within: float  # mean within-run variance of a log median
    ci_low: float  # the bootstrap interval of the ratio (NaN: not computed yet)
    ci_high: float
    external: BetweenRunNoise | None = None
    note: str = ""  # why the row cannot be tested, if it cannot
    runs: tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]] = ((), ())  # base, head
    paired: bool = False  # s2 and df are of the pairs' differences (k_base == k_head pairs)

    def interval(self, policy: ComparePolicy) -> tuple[float, float]:
        """The bootstrap interval of the ratio, computed now if it was left out."""
        if math.isnan(self.ci_low) and self.runs[0] and self.runs[1] and not self.paired:
            return bootstrap_ratio_ci(
                list(self.runs[1]),
                list(self.runs[0]),
                policy.confidence,
                policy.n_resamples,
                policy.seed,
            )
        return self.ci_low, self.ci_high

    @property
    def testable(self) -> bool:
        return not self.note

    @property
    def identical(self) -> bool:
        """Both sides hold the same samples, run for run: a result compared with a copy."""
        base, head = self.runs
        return (
            bool(base)
            and len(base) == len(head)
            and all(np.array_equal(b, h) for b, h in zip(base, head, strict=True))
        )

    def with_runs(self, bruns: Sequence[np.ndarray], hruns: Sequence[np.ndarray]) -> RunEvidence:
        return replace(self, runs=(tuple(bruns), tuple(hruns)))


def run_evidence(
    base: RunsLike,
    head: RunsLike,
    policy: ComparePolicy,
    external: BetweenRunNoise | None = None,
    bootstrap: bool = True,
    paired: bool = False,
) -> RunEvidence:
    """The runs of one row summed up; bootstrap=False leaves the interval for later.

    paired: base run i and head run i were timed together (lockstep); used when both
    sides have the same number (2 or more) of runs.
    """
    bruns, hruns = as_runs(base), as_runs(head)
    nb, nh = sum(map(len, bruns)), sum(map(len, hruns))
    if min(nb, nh) == 0:
        nan = math.nan
        kb, kh = len(bruns), len(hruns)
        note = "no raw samples"
        return RunEvidence(nan, nan, kb, kh, nb, nh, nan, nan, nan, 0.0, nan, nan, nan, None, note)
    within = float(np.mean([log_median_variance(r) for r in (*bruns, *hruns)]))
    if paired and len(bruns) == len(hruns) >= 2:
        matched = [matched_log_ratio(b, h) for b, h in zip(bruns, hruns, strict=True)]
        d = np.array([m.log_ratio for m in matched])
        known = [m for m in matched if not math.isnan(m.variance)]
        own = float(np.mean([m.variance for m in known])) if known else within
        return paired_evidence(d, own, nb, nh, policy, external).with_runs(bruns, hruns)
    ev = evidence_from_logs(
        run_log_medians(bruns), run_log_medians(hruns), within, nb, nh, policy, external
    )
    lo = hi = math.nan
    if bootstrap:
        lo, hi = bootstrap_ratio_ci(
            hruns, bruns, policy.confidence, policy.n_resamples, policy.seed
        )
    return replace(ev, ci_low=lo, ci_high=hi, runs=(tuple(bruns), tuple(hruns)))


def paired_evidence(
    d: np.ndarray,
    within: float,
    n_base: int,
    n_head: int,
    policy: ComparePolicy,
    external: BetweenRunNoise | None = None,
) -> RunEvidence:
    """A row's evidence from paired runs: d, the log ratio of each pair (head over base).

    within is the variance of one pair's log ratio as its own samples show it (matched
    chunks, see `matched_log_ratio`): the floor of the pairs' variance. gap is the
    smallest difference in the direction of the change and spread 0, so a change is
    "separated" only when every pair moved the same way.
    """
    k = len(d)
    diff = float(d.mean())
    s2 = float(d.var(ddof=1))
    half = float(sps.t.ppf(0.5 + policy.confidence / 2, k - 1)) * math.sqrt(s2 / k)
    note = (
        f"fewer than {policy.min_samples} samples"
        if min(n_base, n_head) < policy.min_samples
        else ""
    )
    return RunEvidence(
        ratio=math.exp(diff),
        diff=diff,
        k_base=k,
        k_head=k,
        n_base=n_base,
        n_head=n_head,
        s2=s2,
        gap=float(np.min(d if diff >= 0 else -d)),
        spread=0.0,
        df=float(k - 1),
        within=within,
        ci_low=math.exp(diff - half),
        ci_high=math.exp(diff + half),
        external=external,
        note=note,
        paired=True,
    )


# Expected range of k normal draws in standard deviations (d2 of quality control).
_D2 = {2: 1.128, 3: 1.693, 4: 2.059, 5: 2.326, 6: 2.534, 7: 2.704, 8: 2.847, 9: 2.970, 10: 3.078}


def _sigma_of_range(logs: np.ndarray) -> float:
    """The standard deviation a side's range of log run medians suggests (0: one run)."""
    k = len(logs)
    if k < 2:
        return 0.0
    d2 = _D2.get(k) or 2 * float(sps.norm.ppf(1 - 0.5 / k))  # large k: close enough
    return float(np.ptp(logs)) / d2


def evidence_from_logs(
    base_logs: np.ndarray,
    head_logs: np.ndarray,
    within: float,
    n_base: int,
    n_head: int,
    policy: ComparePolicy,
    external: BetweenRunNoise | None = None,
) -> RunEvidence:
    """A row's evidence from the log medians of its runs and their within-run variance."""
    diff = float(head_logs.mean() - base_logs.mean())
    s2, df = pooled_run_variance(base_logs, head_logs)
    note = ""
    if min(n_base, n_head) < policy.min_samples:
        note = f"fewer than {policy.min_samples} samples"
    elif df == 0 and external is None:
        note = (
            "one run a side: run-to-run noise unknown (one process's samples cannot show it); "
            "needs 2+ runs a side (invbench ab) or a between-run spread (--noise-cv)"
        )
    return RunEvidence(
        ratio=math.exp(diff),
        diff=diff,
        k_base=len(base_logs),
        k_head=len(head_logs),
        n_base=n_base,
        n_head=n_head,
        s2=float(s2),
        gap=float(
            head_logs.min() - base_logs.max() if diff >= 0 else base_logs.min() - head_logs.max()
        ),
        spread=max(_sigma_of_range(base_logs), _sigma_of_range(head_logs)) * _D2[3],
        df=float(df),
        within=within,
        ci_low=math.nan,
        ci_high=math.nan,
        external=external,
        note=note,
    )


@dataclass(frozen=True)
class Judgement:
    """The verdict of one row with the numbers behind it."""

    verdict: Verdict
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float  # unadjusted, of the run-level t-test
    p_adjusted: float
    mde: float  # smallest relative change this row would call (power, adjusted level)
    runs_needed: int  # runs a side for the threshold to be detectable (0: unknown)
    note: str = ""


def _t(q: float | np.ndarray, df: np.ndarray) -> np.ndarray:
    return np.asarray(sps.t.ppf(q, df))


def judge(evidence: Sequence[RunEvidence], policy: ComparePolicy) -> list[Judgement]:
    """Verdicts of every matched ok row at once (variance prior and p adjustment span all).

    A row's variance of a run's log median is its own replicates' s2 on d degrees of
    freedom, moderated by a prior s0^2 on d0: the between-run CV from outside when one
    is given (cv^2 + the row's within-run variance), else the other rows' (see
    `variance_prior`); never below the row's within-run variance.
    """
    if not evidence:
        return []
    prior_s0, prior_d0 = variance_prior([e.s2 for e in evidence], [e.df for e in evidence])
    ok = np.array([e.testable for e in evidence])
    diff = np.array([e.diff for e in evidence])
    own_df = np.array([e.df for e in evidence])
    own = np.where(own_df > 0, np.array([e.s2 for e in evidence]), 0.0)
    within = np.array([e.within for e in evidence])
    s0 = np.array(
        [prior_s0 if e.external is None else e.external.cv**2 + e.within for e in evidence]
    )
    d0 = np.array([prior_d0 if e.external is None else e.external.df for e in evidence])
    d0 = np.where(np.isnan(s0), 0.0, d0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mixed = np.where(np.isinf(d0), s0, (np.nan_to_num(d0 * s0) + own_df * own) / (d0 + own_df))
        between = np.where(d0 > 0, mixed, own)
        s2 = np.maximum(between, np.maximum(within, 1e-12))
        # Paired runs keep the pairs' degrees of freedom even when the pairs happen to
        # scatter less than each pair's own samples say: a process's lot (its memory
        # layout, its CPU) adds to a pair's ratio what its samples cannot show, and k - 1
        # pairs are all that measure it.
        df = np.where(np.isinf(d0), np.inf, d0 + own_df)
        k = np.array(
            [
                1 / max(e.k_base, 1) if e.paired else 1 / max(e.k_base, 1) + 1 / max(e.k_head, 1)
                for e in evidence
            ]
        )
        se = np.sqrt(s2 * k)
        ok &= df > 0
        p = np.where(ok, 2 * sps.t.sf(np.abs(diff / se), np.where(ok, df, 1.0)), np.nan)
    adjusted = {
        Correction.HOLM: holm,
        Correction.BH: benjamini_hochberg,
        Correction.NONE: lambda v: np.asarray(v, dtype=np.float64),
    }[policy.correction](p)
    m = max(int(ok.sum()), 1)
    level = policy.alpha / (1 if policy.correction is Correction.NONE else m)
    dfs = np.where(ok, df, 1.0)
    mde = np.expm1((_t(1 - level / 2, dfs) + _t(policy.power, dfs)) * se)
    zn = float(sps.norm.ppf(1 - level / 2) + sps.norm.ppf(policy.power))
    band = math.log1p(policy.threshold)
    sides = np.array([1.0 if e.paired else 2.0 for e in evidence])  # pairs: one difference
    needed = np.ceil(sides * s2 * zn**2 / band**2)
    half = _t(0.5 + policy.confidence / 2, dfs) * se
    return [
        # The same samples on both sides (a result and its copy) are no change by
        # construction, however noisy their runs; rows without replicates stay unjudged.
        Judgement(Verdict.SAME, 1.0, 1.0, 1.0, 1.0, 1.0, math.nan, 0, "the same samples")
        if ok[i] and ev.identical
        else _decide(
            ev, float(p[i]), float(adjusted[i]), float(mde[i]), int(needed[i]), half[i], policy
        )
        if ok[i]
        else Judgement(
            Verdict.UNCERTAIN, ev.ratio, ev.ci_low, ev.ci_high, *(math.nan,) * 3, 0, ev.note
        )
        for i, ev in enumerate(evidence)
    ]


def _decide(
    ev: RunEvidence,
    p: float,
    p_adj: float,
    mde: float,
    runs_needed: int,
    half: float,
    policy: ComparePolicy,
) -> Judgement:
    band = math.log1p(policy.threshold)
    runs_needed = max(2, runs_needed)
    ci_low, ci_high = ev.ci_low, ev.ci_high
    verdict = Verdict.UNCERTAIN
    # A process can sit in a fast or a slow state for its whole life (a tiny op on a
    # loaded machine: 1.8x apart), which no normal model of run-to-run noise holds: a
    # side whose own runs differ by more than the gap between the sides shows that what
    # separates the sides may be such states, not the code.
    separated = ev.gap > ev.spread or (ev.df == 0 and not ev.paired)
    if p_adj < policy.alpha and abs(ev.diff) >= band and separated:
        # a change also shows in the bootstrap interval, the one the figures draw
        ci_low, ci_high = ev.interval(policy)
        if ev.diff > 0 and ci_low > 1:
            verdict = Verdict.SLOWER
        elif ev.diff < 0 and ci_high < 1:
            verdict = Verdict.FASTER
    elif -band < ev.diff - half and ev.diff + half < band:
        verdict = Verdict.SAME
    note = ""
    if verdict is Verdict.UNCERTAIN:
        detectable = f"{mde:.1%}" if mde < 1 else "over 100%"
        runs = f"~{runs_needed}" if runs_needed < 100 else "over 100"
        note = f"detectable here: {detectable}; {policy.threshold:.0%} needs {runs} runs a side"
        if ev.df == 0 and ev.external is not None:
            note += f" (run-to-run noise from {ev.external.source})"
    return Judgement(verdict, ev.ratio, ci_low, ci_high, p, p_adj, mde, runs_needed, note)


def wording(verdict: Verdict, ratio: float) -> str:
    """'1.18x slower', '1.25x faster', 'same (1.01x)', 'uncertain (1.07x slower?)'."""
    if math.isnan(ratio):
        return verdict.value
    change = f"{ratio:.2f}x slower" if ratio >= 1 else f"{1 / ratio:.2f}x faster"
    if verdict in (Verdict.SLOWER, Verdict.FASTER):
        return change
    if verdict is Verdict.SAME:
        return f"same ({ratio:.2f}x)"
    if verdict is Verdict.UNCERTAIN:
        return f"uncertain ({change}?)"
    return verdict.value


def compare_runs(
    base_runs: RunsLike,
    head_runs: RunsLike,
    policy: ComparePolicy | None = None,
    external: BetweenRunNoise | None = None,
) -> Judgement:
    """The verdict of one row judged alone (no other rows to borrow noise from)."""
    policy = policy or ComparePolicy()
    return judge([run_evidence(base_runs, head_runs, policy, external)], policy)[0]
