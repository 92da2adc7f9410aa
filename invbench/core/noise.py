"""Diagnostics of one row's samples that a median and its interval hide.

- ``drift``: the samples trend with time (Kendall's tau against their order), and the
  last third's median is off the first third's by a material amount: the machine
  changed state while the row was timed (a neighbour started, clocks moved).
- ``two_modes``: the samples fall in two separated clusters (a process that flips
  between a fast and a slow state, a cache that sometimes misses): the median then
  depends on how many samples landed in each, not on the code.
- ``run_spread``: with several runs of a row, the spread of their medians: the noise
  between processes that a single run's interval cannot see.

The thresholds are chosen to stay quiet on unimodal, stationary noise (see the tests:
log-normal and heavy-tailed samples of one state are not flagged).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

MIN_SAMPLES = 30  # fewer samples: no diagnosis
DRIFT_ALPHA = 1e-3
DRIFT_MIN_CHANGE = 0.05  # the last third's median off the first third's by at least 5%
MODE_MIN_SHARE = 0.1  # each cluster holds at least 10% of the samples
MODE_MIN_RATIO = 1.15  # the slow cluster's median at least 15% above the fast one's
MODE_SEPARATION = 4.0  # the gap at least 4 robust sigmas of the wider cluster


@dataclass(frozen=True)
class Drift:
    change: float  # median of the last third / median of the first third - 1
    tau: float  # Kendall's tau of the samples against their order
    p_value: float

    def phrase(self) -> str:
        way = "rose" if self.change > 0 else "fell"
        return (
            f"drifting: samples {way} {abs(self.change):.0%} from the first third to the "
            f"last (Kendall tau {self.tau:+.2f})"
        )


@dataclass(frozen=True)
class Modes:
    fast_ms: float  # median of the faster cluster
    slow_ms: float  # median of the slower cluster
    slow_share: float  # share of the samples in the slower cluster

    def phrase(self) -> str:
        return (
            f"bimodal: {self.slow_share:.0%} of samples near {_ms(self.slow_ms)}, "
            f"the rest near {_ms(self.fast_ms)}"
        )


def _ms(value: float) -> str:
    return f"{value * 1e3:.3g} us" if value < 0.1 else f"{value:.3g} ms"


def drift(samples: Sequence[float] | np.ndarray) -> Drift | None:
    """A material, significant trend of the samples with time; None if there is none."""
    x = np.asarray(samples, dtype=float)
    n = len(x)
    if n < MIN_SAMPLES or not np.all(np.isfinite(x)) or np.ptp(x) == 0:
        return None
    result = sps.kendalltau(np.arange(n), x)
    tau, p = float(result.statistic), float(result.pvalue)
    third = n // 3
    first, last = float(np.median(x[:third])), float(np.median(x[-third:]))
    if first <= 0:
        return None
    change = last / first - 1
    if p < DRIFT_ALPHA and abs(change) >= DRIFT_MIN_CHANGE:
        return Drift(change, tau, p)
    return None


def _robust_sigma(values: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def two_modes(samples: Sequence[float] | np.ndarray) -> Modes | None:
    """Two separated clusters of samples (on a log scale); None for one.

    The split is the exact two-means split of the sorted log samples (each side at least
    MODE_MIN_SHARE of them); it counts as two modes only when the cluster medians differ
    by MODE_MIN_RATIO and by MODE_SEPARATION robust sigmas of the wider cluster.
    """
    x = np.asarray(samples, dtype=float)
    if len(x) < MIN_SAMPLES or not np.all(x > 0) or not np.all(np.isfinite(x)):
        return None
    logs = np.sort(np.log(x))
    n = len(logs)
    least = max(2, math.ceil(MODE_MIN_SHARE * n))
    if n - least < least:
        return None
    csum = np.cumsum(logs)
    csq = np.cumsum(logs**2)
    k = np.arange(least, n - least + 1)  # left cluster sizes
    left_sse = csq[k - 1] - csum[k - 1] ** 2 / k
    right_n = n - k
    right_sum = csum[-1] - csum[k - 1]
    right_sse = (csq[-1] - csq[k - 1]) - right_sum**2 / right_n
    split = int(k[np.argmin(left_sse + right_sse)])
    fast, slow = logs[:split], logs[split:]
    gap = float(np.median(slow) - np.median(fast))
    sigma = max(_robust_sigma(fast), _robust_sigma(slow))
    if gap < math.log(MODE_MIN_RATIO) or gap < MODE_SEPARATION * sigma:
        return None
    return Modes(
        fast_ms=float(math.exp(np.median(fast))),
        slow_ms=float(math.exp(np.median(slow))),
        slow_share=len(slow) / n,
    )


def run_spread(run_medians: Sequence[float]) -> float | None:
    """Coefficient of variation of the runs' medians (log scale); None for under two runs."""
    m = np.asarray([v for v in run_medians if v is not None and v > 0], dtype=float)
    if len(m) < 2:
        return None
    return float(np.std(np.log(m), ddof=1))
