"""Change points in a series: where its level stepped, by how much, and how sure that is.

Detection is ruptures' PELT (l2 cost) over the normal scores of the ranks of the
log per-commit values: for a flat series these are standard normal whatever the
noise looks like (a run on a slow core, a 100x outlier), so one penalty per change,
``penalty`` times log(n), fits every series.

Every step PELT proposes is then tested on the two segments around it with a
permutation test that knows the cut was chosen (as E-divisive tests its splits):
the Mann-Whitney rank-sum z at the cut against the largest z over every allowed
cut of shuffled copies. A step is kept when its p-value is below ``alpha`` and its
size (ratio of the segments' medians) is at least ``threshold``; otherwise the
weakest step is dropped, its two segments merge and the rest are tested again.
The confidence reported is 1 - p.

A step never crosses machines: a series belongs to one machine identity.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import ruptures as rpt
from scipy import stats as sps

from invbench.analysis.history.series import Point, Series

NOISE_FLOOR = 1e-3  # relative noise never taken below 0.1%: identical values are no signal


@dataclass(frozen=True)
class Policy:
    threshold: float = 0.05  # smallest relative step reported
    alpha: float = 0.001  # largest permutation p-value of a reported step
    min_size: int = 3  # fewest commits on either side of a step
    penalty: float = 2.0  # PELT penalty per change, times log(n), on normal scores
    permutations: int = 1999  # shuffles in a step's test
    seed: int = 0  # of the shuffles: the same history gives the same answer
    band_sigmas: float = 2.0  # the noise band is the segment level times exp(+-this * noise)


@dataclass(frozen=True)
class Step:
    index: int  # the first point of the new level
    good: Point  # last commit of the old level
    bad: Point  # first commit of the new level
    before_ms: float  # median of the old level's points
    after_ms: float
    p_value: float

    @property
    def ratio(self) -> float:
        return self.after_ms / self.before_ms

    @property
    def size(self) -> float:
        return self.ratio - 1.0

    @property
    def confidence(self) -> float:
        return 1.0 - self.p_value

    @property
    def regression(self) -> bool:
        return self.ratio > 1.0  # a time went up


@dataclass(frozen=True)
class Segment:
    start: int
    stop: int  # exclusive
    level_ms: float  # median of its points
    noise: float | None  # relative between-run noise (robust sigma of log run medians)
    low_ms: float | None  # the noise band; None without an estimate of the noise
    high_ms: float | None


@dataclass(frozen=True)
class Analysis:
    series: Series
    steps: tuple[Step, ...]
    segments: tuple[Segment, ...]
    noise: float | None  # the series' relative noise, from consecutive differences

    @property
    def regressions(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.regression)


def robust_noise(log_values: np.ndarray) -> float:
    """Robust sigma of log values from consecutive differences (MAD / sqrt 2)."""
    if log_values.size < 3:
        return NOISE_FLOOR
    diffs = np.diff(log_values)
    mad = float(np.median(np.abs(diffs - np.median(diffs))))
    return max(1.4826 * mad / math.sqrt(2.0), NOISE_FLOOR)


def _segment_noise(points: Sequence[Point], fallback: float | None) -> float | None:
    """Robust sigma of the log run medians of a segment: the spread a run lands in.

    Every run counts (a commit run three times gives three values); with fewer than
    three runs the series' noise from consecutive differences stands in, and with
    fewer than three commits in the series there is no estimate at all.
    """
    runs = np.log(np.array([ms for p in points for ms in p.run_ms], dtype=np.float64))
    if runs.size < 3:
        return fallback
    mad = float(np.median(np.abs(runs - np.median(runs))))
    return max(1.4826 * mad, NOISE_FLOOR)


def _rank_z(ranks: np.ndarray, min_size: int) -> np.ndarray:
    """|z| of the Mann-Whitney rank sum of the first k values, for every allowed cut k.

    ranks has one row per ordering (the data, then its permutations); column j is the
    cut k = min_size + j.
    """
    m = ranks.shape[-1]
    k = np.arange(min_size, m - min_size + 1)
    sums = np.cumsum(ranks, axis=-1)[..., k - 1]
    mean = k * (m + 1) / 2.0
    sd = np.sqrt(k * (m - k) * (m + 1) / 12.0)
    return np.abs(sums - mean) / sd


def _test(y: np.ndarray, lo: int, cut: int, hi: int, policy: Policy) -> tuple[float, float]:
    """(p-value, log ratio) of a step at cut between y[lo:cut] and y[cut:hi].

    The p-value is a permutation test that knows the cut was chosen: the rank-sum z at
    the cut against the largest z over every allowed cut of shuffled copies of the two
    segments (as E-divisive tests its splits).
    """
    values = y[lo:hi]
    ranks = sps.rankdata(values)
    observed = _rank_z(ranks[None, :], policy.min_size)[0, cut - lo - policy.min_size]
    rng = np.random.default_rng(policy.seed)
    shuffled = rng.permuted(np.broadcast_to(ranks, (policy.permutations, ranks.size)), axis=1)
    null = _rank_z(shuffled, policy.min_size).max(axis=1)
    p = (1.0 + np.count_nonzero(null >= observed - 1e-9)) / (1.0 + policy.permutations)
    return float(p), float(np.median(y[cut:hi]) - np.median(y[lo:cut]))


def find_steps(y: np.ndarray, policy: Policy) -> list[int]:
    """Indices (first point of a new level) of the significant steps of log values y."""
    n = y.size
    if n < 2 * policy.min_size:
        return []
    scores = sps.norm.ppf(sps.rankdata(y) / (n + 1))  # N(0, 1) for any flat series
    algo = rpt.Pelt(model="l2", min_size=policy.min_size, jump=1).fit(scores)
    cuts = [c for c in algo.predict(pen=policy.penalty * math.log(n)) if c < n]
    while cuts:
        bounds = [0, *cuts, n]
        worst, worst_score = -1, -1.0
        for i, cut in enumerate(cuts):
            p, log_ratio = _test(y, bounds[i], cut, bounds[i + 2], policy)
            weak = p >= policy.alpha or abs(math.expm1(log_ratio)) < policy.threshold
            score = p if weak else -1.0
            if weak and score >= worst_score:
                worst, worst_score = i, score
        if worst < 0:
            break
        del cuts[worst]
    return cuts


def analyse(series: Series, policy: Policy | None = None) -> Analysis:
    policy = policy or Policy()
    values = series.values
    y = np.log(values)
    noise = robust_noise(y) if y.size >= 3 else None
    cuts = find_steps(y, policy)
    bounds = [0, *cuts, len(values)]
    segments = []
    for lo, hi in itertools.pairwise(bounds):
        level = float(np.median(values[lo:hi]))
        seg_noise = _segment_noise(series.points[lo:hi], noise)
        if seg_noise is None:
            segments.append(Segment(lo, hi, level, None, None, None))
            continue
        spread = math.exp(policy.band_sigmas * seg_noise)
        segments.append(Segment(lo, hi, level, seg_noise, level / spread, level * spread))
    steps = []
    for i, cut in enumerate(cuts):
        p, _ = _test(y, bounds[i], cut, bounds[i + 2], policy)
        steps.append(
            Step(
                index=cut,
                good=series.points[cut - 1],
                bad=series.points[cut],
                before_ms=segments[i].level_ms,
                after_ms=segments[i + 1].level_ms,
                p_value=p,
            )
        )
    return Analysis(series, tuple(steps), tuple(segments), noise)
