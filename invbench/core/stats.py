"""Raw samples -> summaries, and the adaptive stopping rule."""

from __future__ import annotations

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


def median_ci(sorted_samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median from binomial order statistics."""
    n = len(sorted_samples)
    if n < 3:
        return float(sorted_samples[0]), float(sorted_samples[-1])
    alpha = 1.0 - confidence
    lo = int(sps.binom.ppf(alpha / 2, n, 0.5))
    hi = int(sps.binom.isf(alpha / 2, n, 0.5))
    lo = max(lo - 1, 0)
    hi = min(hi, n - 1)
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
