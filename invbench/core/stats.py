"""Raw samples -> summaries, and the adaptive stopping rule."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    p20: float
    p80: float
    min: float
    mean: float
    ci_low: float  # confidence interval of the median (order statistics)
    ci_high: float
    q25: float = math.nan
    q75: float = math.nan

    @property
    def rel_ci_half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2 / self.median if self.median > 0 else math.inf

    def row_fields(self) -> dict[str, Any]:
        """The result-row columns this summary fills (n_samples, median_ms, ...)."""
        return {
            "n_samples": self.n,
            "median_ms": self.median,
            "p20_ms": self.p20,
            "p80_ms": self.p80,
            "min_ms": self.min,
            "mean_ms": self.mean,
            "ci_low_ms": self.ci_low,
            "ci_high_ms": self.ci_high,
        }

    @property
    def rel_spread(self) -> float:
        """(p80 - p20) / median."""
        return (self.p80 - self.p20) / self.median if self.median > 0 else math.inf

    @property
    def rel_iqr(self) -> float:
        """(q75 - q25) / median: the spread torch.utils.benchmark warns about above 10%."""
        return (self.q75 - self.q25) / self.median if self.median > 0 else math.inf


@functools.lru_cache(maxsize=4096)
def _median_ci_ranks(n: int, confidence: float) -> tuple[int, int]:
    alpha = 1.0 - confidence
    lo = int(sps.binom.ppf(alpha / 2, n, 0.5))
    hi = int(sps.binom.isf(alpha / 2, n, 0.5))
    return max(lo - 1, 0), min(hi, n - 1)


def median_ci(sorted_samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median from binomial order statistics."""
    n = len(sorted_samples)
    if n < 3:
        return float(sorted_samples[0]), float(sorted_samples[-1])
    lo, hi = _median_ci_ranks(n, confidence)
    return float(sorted_samples[lo]), float(sorted_samples[hi])


def summarize(samples: Sequence[float]) -> Summary:
    if not samples:
        raise ValueError("no samples to summarize")
    a = np.sort(np.asarray(samples, dtype=np.float64))
    lo, hi = median_ci(a)
    p20, q25, med, q75, p80 = np.percentile(a, [20, 25, 50, 75, 80])
    return Summary(
        n=len(a),
        median=float(med),
        p20=float(p20),
        p80=float(p80),
        min=float(a[0]),
        mean=float(a.mean()),
        ci_low=lo,
        ci_high=hi,
        q25=float(q25),
        q75=float(q75),
    )


class StopReason(StrEnum):
    FIXED = "fixed"  # the requested number of samples
    CONVERGED = "converged"  # CI of the median narrower than the target
    TIME_CAP = "time-cap"  # per-case time cap reached first
    RESOLUTION = "resolution"  # CI within the timer's resolution, which is over the target


@dataclass(frozen=True)
class StopPolicy:
    samples: int | None = None  # fixed count; None: adaptive
    min_samples: int = 10
    min_time_s: float = 0.05
    max_time_s: float = 2.0
    target_rel_ci: float = 0.01

    def decide(
        self, samples_ms: Sequence[float], elapsed_s: float = 0.0, floor_ms: float = 0.0
    ) -> StopReason | None:
        """Why to stop now, or None to keep sampling.

        The minimum time counts measured time (the sum of the samples); the cap counts
        the larger of that and elapsed_s, the wall time spent sampling (cache flushes,
        synchronisation and telemetry included), so a slow sampling loop still ends.

        floor_ms is the least CI half-width the timer can resolve (half its tick): the
        CI never counts as narrower. Where that floor alone is over the target, the
        rule stops once the CI is within the floor (``resolution``): more samples cannot
        make the timer finer.
        """
        n = len(samples_ms)
        if self.samples is not None:
            return StopReason.FIXED if n >= self.samples else None
        total_s = sum(samples_ms) / 1e3
        if n >= self.min_samples and total_s >= self.min_time_s:
            s = summarize(samples_ms)
            half = (s.ci_high - s.ci_low) / 2
            allowed = self.target_rel_ci * s.median
            if max(half, floor_ms) <= allowed:
                return StopReason.CONVERGED
            if floor_ms > allowed and half <= floor_ms:
                return StopReason.RESOLUTION
        if max(total_s, elapsed_s) >= self.max_time_s and n >= min(self.min_samples, 3):
            return StopReason.TIME_CAP
        return None


def warmup_calls(estimate_ms: float, warmup_ms: float) -> int:
    """Calls to warm up for: at least warmup_ms, longer for long kernels (3 calls' worth)."""
    budget = max(warmup_ms, 3 * estimate_ms)
    return max(1, min(10_000, math.ceil(budget / max(estimate_ms, 1e-4))))


# -- comparing runs: the one bootstrap of a ratio, run-level inference ---------------

RunsLike = Sequence[Sequence[float] | np.ndarray] | np.ndarray


def as_runs(samples: RunsLike) -> list[np.ndarray]:
    """A side's samples as a list of runs: a flat array is one run; empty runs dropped."""
    groups: Sequence[Any] = (
        [samples] if isinstance(samples, np.ndarray) and samples.ndim == 1 else list(samples)
    )
    runs = [np.asarray(r, dtype=np.float64).ravel() for r in groups]
    return [r for r in runs if len(r)]


def _log_center_replicates(
    runs: Sequence[np.ndarray], n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Bootstrap replicates of a side's centre: the mean log median of its runs.

    Two stages when there are several runs: runs are drawn with replacement, then the
    samples of each drawn run; one run: its samples are resampled.
    """
    # per run: n_resamples bootstrap log medians (row i of every run is used together)
    logmed = np.stack(
        [np.log(np.median(r[rng.integers(0, len(r), (n_resamples, len(r)))], axis=1)) for r in runs]
    )
    if len(runs) == 1:
        return np.asarray(logmed[0])
    picks = rng.integers(0, len(runs), (n_resamples, len(runs)))
    return np.asarray(logmed[picks, np.arange(n_resamples)[:, None]].mean(axis=1))


def bootstrap_ratio_ci(
    numerator: RunsLike,
    denominator: RunsLike,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of centre(numerator) / centre(denominator).

    The centre of a side is the geometric mean of its run medians (every run weighted
    alike; one run: its median). Each side is a run (flat array) or a sequence of runs;
    with several runs a side, runs are resampled before their samples, so the interval
    holds the run-to-run variation that the samples of one process cannot show. This is
    the one interval of a ratio of medians: `invbench compare` and the figures use it.
    NaN when a side has fewer than two samples; exact when all samples are constant.
    """
    num, den = as_runs(numerator), as_runs(denominator)
    if sum(map(len, num)) < 2 or sum(map(len, den)) < 2:
        return math.nan, math.nan
    if all(np.ptp(r) == 0 for r in (*num, *den)):
        ratio = math.exp(run_log_medians(num).mean() - run_log_medians(den).mean())
        if all(r[0] == num[0][0] for r in num) and all(r[0] == den[0][0] for r in den):
            return ratio, ratio
    rng = np.random.default_rng(seed)
    logs = _log_center_replicates(num, n_resamples, rng) - _log_center_replicates(
        den, n_resamples, rng
    )
    tail = (1.0 - confidence) / 2
    lo, hi = np.quantile(logs, [tail, 1.0 - tail])
    return float(math.exp(lo)), float(math.exp(hi))


def run_log_medians(runs: Sequence[np.ndarray]) -> np.ndarray:
    return np.log(np.array([np.median(r) for r in runs], dtype=np.float64))


def log_median_variance(run: np.ndarray, confidence: float = 0.95) -> float:
    """Variance of one run's log median from its samples alone (within-run noise)."""
    if len(run) < 3:
        return math.inf
    return float(log_median_variances(np.asarray(run, dtype=np.float64)[None, :], confidence)[0])


def log_median_variances(samples: np.ndarray, confidence: float = 0.95) -> np.ndarray:
    """Within-run variance of the log median of each run along the last axis (n >= 3).

    From the distribution-free CI of the median: half its log width over the normal
    quantile. Zero for constant samples.
    """
    a = np.sort(samples, axis=-1)
    lo, hi = _median_ci_ranks(a.shape[-1], confidence)
    z = float(sps.norm.ppf(0.5 + confidence / 2))
    return np.asarray((np.log(a[..., hi] / a[..., lo]) / (2 * z)) ** 2)


def pooled_run_variance(base_logs: np.ndarray, head_logs: np.ndarray) -> tuple[np.ndarray, int]:
    """Run-to-run variance of log run medians, pooled within the two sides (last axis).

    Returns (variance, degrees of freedom); NaN variance with no degrees of freedom.
    """
    df = base_logs.shape[-1] + head_logs.shape[-1] - 2
    if df <= 0:
        return np.full(base_logs.shape[:-1], np.nan), 0
    ss = ((base_logs - base_logs.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1) + (
        (head_logs - head_logs.mean(axis=-1, keepdims=True)) ** 2
    ).sum(axis=-1)
    return np.asarray(ss / df), df


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control); NaN stays NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = len(q)
    if m:
        order = np.argsort(q)
        adjusted = np.maximum.accumulate((m - np.arange(m)) * q[order])
        result = np.empty(m)
        result[order] = np.minimum(adjusted, 1.0)
        out[ok] = result
    return out


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false-discovery control); NaN stays NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = sps.false_discovery_control(p[ok], method="bh")
    return out


def _trigamma_inverse(y: float) -> float:
    """x with trigamma(x) = y (Newton's method as in limma's trigammaInverse)."""
    from scipy.special import polygamma

    if y > 1e7:
        return 1.0 / math.sqrt(y)
    if y < 1e-6:
        return 1.0 / y
    x = 0.5 + 1.0 / y
    for _ in range(50):
        tri = float(polygamma(1, x))
        step = tri * (1.0 - tri / y) / float(polygamma(2, x))
        x += step
        if -step / x < 1e-8:
            break
    return x


MIN_PRIOR_ROWS = 8  # fewer rows: the moments of log s^2 say too little to pool on


def variance_prior(variances: Sequence[float], dfs: Sequence[float]) -> tuple[float, float]:
    """Prior (s0^2, d0) for run-to-run variances of many rows (empirical Bayes).

    Each row's variance s^2 on d degrees of freedom is taken as a scaled F draw around a
    common s0^2 with d0 prior degrees of freedom, fitted by moments of log s^2 (Smyth,
    2004: limma's moderated t). A row's moderated variance is then
    (d0 s0^2 + d s^2) / (d0 + d) on d0 + d degrees of freedom: rows borrow strength
    from one another, and a row much noisier than the rest keeps most of its own
    variance. d0 is inf when the rows agree beyond chance, 0 with fewer than
    MIN_PRIOR_ROWS rows.
    """
    from scipy.special import digamma, polygamma

    s2 = np.asarray(variances, dtype=np.float64)
    d = np.asarray(dfs, dtype=np.float64)
    keep = (d > 0) & np.isfinite(s2) & (s2 > 0)
    s2, d = s2[keep], d[keep]
    if len(s2) < MIN_PRIOR_ROWS:
        return math.nan, 0.0
    e = np.log(s2) - digamma(d / 2) + np.log(d / 2)
    emean = float(e.mean())
    evar = float(((e - emean) ** 2).sum() / (len(e) - 1) - polygamma(1, d / 2).mean())
    if evar <= 0:
        return math.exp(emean), math.inf
    d0 = 2 * _trigamma_inverse(evar)
    return math.exp(emean + float(digamma(d0 / 2)) - math.log(d0 / 2)), d0


MATCHED_CHUNKS = 16  # a lockstep pair's samples are compared in this many matched chunks


@dataclass(frozen=True)
class MatchedRatio:
    log_ratio: float
    variance: float  # of log_ratio, from the spread of the chunks (NaN: one chunk)
    chunks: int


def matched_log_ratio(
    base: np.ndarray, head: np.ndarray, chunks: int = MATCHED_CHUNKS
) -> MatchedRatio:
    """Log ratio of head to base timed in lockstep, and its variance, from matched chunks.

    Both sides' samples are in time order and were taken in alternating rounds, so the
    i-th of `chunks` equal slices of each side covers the same stretch of time: the
    machine's state in it hit both alike. The estimate is the median over chunks of the
    log ratio of the slices' medians (robust to a chunk that straddles a change of
    state); its variance is that of the median of the chunk ratios, (pi / 2) s^2 / k.
    With fewer samples than two per chunk the whole runs are one chunk each.
    """
    k = max(1, min(chunks, len(base) // 2, len(head) // 2))
    ratios = np.array(
        [
            math.log(float(np.median(h)) / float(np.median(b)))
            for b, h in zip(np.array_split(base, k), np.array_split(head, k), strict=True)
        ]
    )
    if k < 2:
        return MatchedRatio(float(ratios[0]), math.nan, 1)
    center = float(np.median(ratios))
    sigma = 1.4826 * float(np.median(np.abs(ratios - center)))  # robust: a chunk astride
    return MatchedRatio(center, math.pi / 2 * sigma**2 / k, k)  # a change of state is not noise
