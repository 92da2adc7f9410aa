"""A base's between-run spread from the history: what one run a side can be judged against.

One run of the base and one of the head cannot tell a change from the machine's
run-to-run noise: the samples inside a run share that run's state. The history
has seen the same row on the same machine many times; the spread of those runs'
medians is the noise a single new run has to stand out of (conbench's lookback
z-score). ``base_spread`` gives it for one row key and machine:

- the runs used are the series' runs on that machine up to and including
  ``upto_commit`` (all of them when None), limited to the level the row is at
  now: runs before the last change point are left out, so an old step does not
  pass for noise; at most ``lookback`` of the latest runs are kept;
- ``median_ms`` is the median of those runs' medians and ``rel_sd`` their
  spread: the standard deviation of the log run medians (1.4826 times their
  median absolute deviation once there are ``robust_from`` runs or more, so one
  stray run does not widen it), i.e. a relative spread (0.05 = 5%);
- with fewer than ``min_runs`` runs, ``enough`` is False and ``reason`` says
  why, and the caller should say so instead of judging.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from invbench.analysis.history.changepoints import Policy, analyse
from invbench.analysis.history.machine import machine_of
from invbench.analysis.history.series import build_series
from invbench.analysis.history.store import Filters, HistoryStore
from invbench.analysis.verdicts import BetweenRunNoise
from invbench.storage.results import KEY_COLUMNS


@dataclass(frozen=True)
class BaseSpread:
    machine_id: str
    key: Mapping[str, Any]
    run_ms: tuple[float, ...]  # the runs' medians used, oldest first
    commits: tuple[str, ...]  # the commit of each of those runs
    median_ms: float | None
    rel_sd: float | None  # spread of the log run medians; None below two runs
    enough: bool
    reason: str  # why not enough ("" when enough)

    @property
    def n_runs(self) -> int:
        return len(self.run_ms)

    def z(self, value_ms: float) -> float | None:
        """How many spreads a new run's median lies from the base's level (+: slower)."""
        if not self.enough or self.median_ms is None or not self.rel_sd:
            return None
        return math.log(value_ms / self.median_ms) / self.rel_sd


def _spread(log_ms: np.ndarray, robust_from: int) -> float | None:
    if log_ms.size < 2:
        return None
    if log_ms.size >= robust_from:
        return float(1.4826 * np.median(np.abs(log_ms - np.median(log_ms))))
    return float(np.std(log_ms, ddof=1))


def base_spread(
    store: HistoryStore,
    key: Mapping[str, Any],
    machine_id: str,
    *,
    upto_commit: str | None = None,
    lookback: int = 20,
    min_runs: int = 2,
    robust_from: int = 5,
    policy: Policy | None = None,
) -> BaseSpread:
    """The between-run spread of the row `key` (KEY_COLUMNS) on the machine `machine_id`."""
    extra = {
        k: key[k] for k in KEY_COLUMNS if k not in ("suite", "backend", "case", "dtype", "mode")
    }
    filters = Filters(
        suite=[str(key["suite"])],
        backend=[str(key["backend"])],
        case=[str(key["case"])],
        dtype=[str(key["dtype"])],
        mode=[str(key["mode"])],
        machine=[machine_id],
        extra=extra,
    )
    found = [
        s for s in build_series(store.rows(filters, ok_only=True)) if s.machine_id == machine_id
    ]

    def none(reason: str) -> BaseSpread:
        return BaseSpread(machine_id, dict(key), (), (), None, None, False, reason)

    if not found:
        return none("the history has no run of this row on this machine")
    series = found[0]
    points = list(series.points)
    if upto_commit is not None:
        matches = [i for i, p in enumerate(points) if p.commit.startswith(upto_commit)]
        if not matches:
            return none(f"the history has no run of this row at commit {upto_commit[:12]}")
        points = points[: matches[-1] + 1]
    steps = analyse(replace(series, points=tuple(points)), policy).steps
    if steps:
        points = points[steps[-1].index :]
    runs = [(ms, p.commit) for p in points for ms in p.run_ms][-lookback:]
    run_ms = tuple(ms for ms, _ in runs)
    commits = tuple(c for _, c in runs)
    log_ms = np.log(np.asarray(run_ms, dtype=np.float64))
    median = float(np.exp(np.median(log_ms)))
    spread = _spread(log_ms, robust_from)
    if len(run_ms) < min_runs:
        reason = (
            f"{len(run_ms)} run{'s' if len(run_ms) != 1 else ''} of this row on this machine "
            f"at its current level; at least {min_runs} needed"
        )
        return BaseSpread(machine_id, dict(key), run_ms, commits, median, spread, False, reason)
    return BaseSpread(machine_id, dict(key), run_ms, commits, median, spread, True, "")


def history_noise(
    store: HistoryStore, base_meta: Mapping[str, Any], device: str
) -> Callable[[Mapping[str, Any]], BetweenRunNoise | None]:
    """compare's NoiseLookup from a history: each row's between-run spread on the base's machine.

    A row whose history on that machine has too few runs at its current level gets
    None (compare then uses --noise-cv, or its own replicates, or says it cannot tell).
    """
    machine_id = machine_of(base_meta, device).id

    def lookup(key: Mapping[str, Any]) -> BetweenRunNoise | None:
        spread = base_spread(store, key, machine_id)
        if not spread.enough or not spread.rel_sd:
            return None
        return BetweenRunNoise(
            spread.rel_sd, spread.n_runs, f"the history ({spread.n_runs} runs on this machine)"
        )

    return lookup
