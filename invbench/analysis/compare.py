"""Compare two result sets row by row: ratio of medians, bootstrap CI, Mann-Whitney U, verdict.

A change is called only when it is significant AND the ratio of medians is beyond
the threshold (symmetric on a log scale: HEAD/BASE >= 1 + t is slower, BASE/HEAD
>= 1 + t is faster). Significant means both: Mann-Whitney U on the raw samples
gives p < alpha, and the bootstrap CI of the ratio excludes 1. When a side holds
several runs (the `run` column that `invbench ab` writes), the bootstrap resamples
runs before samples, so run-to-run (process, drift) variation widens the CI; the
sample-level U test alone would treat thousands of correlated samples as
independent and call noise a change. With several runs a side, a change must also
hold run by run: every head run's median is beyond the threshold from every base
run's median, by more than the run medians of either side spread among themselves
(one process dealt a slow core or memory layout, or one burst of machine load over
adjacent runs, must not make a change on its own), and a Welch t-test on the log run
medians, the runs being the independent replicates, must give p < alpha. With two
runs a side that takes a gap far beyond the run-to-run spread: more repeats make
smaller changes callable.
A row is `same` when the CI lies inside the
threshold band (a change as large as the threshold is ruled out); everything else
is `uncertain`. Rows that are not ok on either side never get a speed verdict.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from invbench.core.spec import Status
from invbench.storage.results import (
    KEY_COLUMNS,
    META_FILE,
    RESULT_SCHEMA_VERSION,
    ResultsError,
    ResultSet,
    load_results,
)

# Optional column of samples.parquet: which run (process) a sample came from.
RUN_COLUMN = "run"
# Statuses that mean the code broke, as opposed to "cannot run here" (skipped): every
# status but ok and skipped, so a head that crashes or hangs is a regression too.
FAILED = frozenset(s.value for s in Status) - {Status.OK.value, Status.SKIPPED.value}


class CompareError(ValueError):
    """Two result sets that cannot be compared; the CLI prints it on one line and exits 2."""


class Verdict(StrEnum):
    SLOWER = "slower"
    FASTER = "faster"
    SAME = "same"
    UNCERTAIN = "uncertain"  # neither a change nor its absence can be established
    BROKEN = "broken"  # ok on base, error/incorrect/oom/crashed/timeout on head
    NOT_OK = "not ok"  # not ok on a side otherwise (skipped, or already failing on base)
    ADDED = "added"  # only on head
    REMOVED = "removed"  # only on base


# Verdicts that are changes a pull request should hear about, in display order.
CHANGED = (Verdict.SLOWER, Verdict.BROKEN, Verdict.FASTER, Verdict.ADDED, Verdict.REMOVED)
UNCHANGED = (Verdict.UNCERTAIN, Verdict.NOT_OK, Verdict.SAME)
REGRESSIONS = frozenset({Verdict.SLOWER, Verdict.BROKEN})


@dataclass(frozen=True)
class ComparePolicy:
    threshold: float = 0.05  # smallest relative change worth calling
    alpha: float = 0.01  # significance level of the Mann-Whitney U test
    confidence: float = 0.95  # of the bootstrap CI of the ratio of medians
    n_resamples: int = 2000
    min_samples: int = 5  # fewer on a side: uncertain
    seed: int = 0  # the bootstrap is reproducible

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 10:
            raise CompareError(f"--threshold must be in (0, 10), got {self.threshold}")
        if not 0 < self.alpha < 1:
            raise CompareError(f"alpha must be in (0, 1), got {self.alpha}")


@dataclass(frozen=True)
class SampleComparison:
    """What the raw samples of one matched row say."""

    verdict: Verdict
    ratio: float  # median(head) / median(base); > 1 is slower
    ci_low: float
    ci_high: float
    p_value: float
    n_base: int
    n_head: int
    note: str = ""


def _median_ratio(base: np.ndarray, head: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(head, axis=axis) / np.median(base, axis=axis)


def _run_bootstrap_medians(
    runs: Sequence[np.ndarray], n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Medians of two-stage resamples: runs with replacement, then samples within each."""
    out = np.empty(n_resamples)
    k = len(runs)
    for i in range(n_resamples):
        parts = [
            runs[j][rng.integers(0, len(runs[j]), len(runs[j]))] for j in rng.integers(0, k, k)
        ]
        out[i] = np.median(np.concatenate(parts))
    return out


def ratio_ci(
    base_runs: Sequence[np.ndarray], head_runs: Sequence[np.ndarray], policy: ComparePolicy
) -> tuple[float, float]:
    """Bootstrap CI of median(head) / median(base).

    With two or more runs (processes) on each side, runs are resampled before their
    samples, so the CI includes the run-to-run variation that samples of one process
    cannot show; otherwise scipy.stats.bootstrap on the samples.
    """
    b, h = np.concatenate(base_runs), np.concatenate(head_runs)
    if np.ptp(b) == 0 and np.ptp(h) == 0:  # constant samples: the ratio is exact
        r = float(np.median(h) / np.median(b))
        return r, r
    rng = np.random.default_rng(policy.seed)
    if len(base_runs) >= 2 and len(head_runs) >= 2:
        ratios = _run_bootstrap_medians(head_runs, policy.n_resamples, rng) / (
            _run_bootstrap_medians(base_runs, policy.n_resamples, rng)
        )
        tail = (1 - policy.confidence) / 2 * 100
        lo, hi = np.percentile(ratios, [tail, 100 - tail])
        return float(lo), float(hi)
    ci = sps.bootstrap(
        (b, h),
        _median_ratio,
        n_resamples=policy.n_resamples,
        confidence_level=policy.confidence,
        method="percentile",
        vectorized=True,
        rng=rng,
    ).confidence_interval
    return float(ci.low), float(ci.high)


def _runs_differ(
    base_medians: Sequence[float], head_medians: Sequence[float], alpha: float
) -> bool:
    """Welch's t-test on the log run medians: is the difference beyond run-to-run noise?"""
    lb, lh = np.log(base_medians), np.log(head_medians)
    if np.ptp(lb) == 0 and np.ptp(lh) == 0:  # no run-to-run variation at all
        return bool(lb[0] != lh[0])
    p = float(sps.ttest_ind(lb, lh, equal_var=False).pvalue)
    return p < alpha


def compare_runs(
    base_runs: Sequence[Sequence[float] | np.ndarray],
    head_runs: Sequence[Sequence[float] | np.ndarray],
    policy: ComparePolicy = ComparePolicy(),
) -> SampleComparison:
    """Verdict on raw samples grouped by run (process) on each side; any one unit."""
    bruns = [np.asarray(r, dtype=np.float64) for r in base_runs if len(r)]
    hruns = [np.asarray(r, dtype=np.float64) for r in head_runs if len(r)]
    nb, nh = sum(len(r) for r in bruns), sum(len(r) for r in hruns)
    if min(nb, nh) == 0:
        return SampleComparison(
            Verdict.UNCERTAIN, math.nan, math.nan, math.nan, 1.0, nb, nh, "no raw samples"
        )
    b, h = np.concatenate(bruns), np.concatenate(hruns)
    ratio = float(np.median(h) / np.median(b))
    if min(nb, nh) < policy.min_samples:
        return SampleComparison(
            Verdict.UNCERTAIN,
            ratio,
            math.nan,
            math.nan,
            1.0,
            nb,
            nh,
            f"fewer than {policy.min_samples} samples",
        )
    p = float(sps.mannwhitneyu(b, h, alternative="two-sided").pvalue)
    lo, hi = ratio_ci(bruns, hruns, policy)
    band = 1.0 + policy.threshold
    significant = p < policy.alpha
    slower_runs = faster_runs = True  # with one run a side there is nothing to check
    if len(bruns) >= 2 and len(hruns) >= 2:
        bmed = [float(np.median(r)) for r in bruns]
        hmed = [float(np.median(r)) for r in hruns]
        # the gap between the sides must pass the threshold and exceed the spread of
        # run medians within either side (the same code's run-to-run variation)
        spread = max(max(bmed) / min(bmed), max(hmed) / min(hmed))
        slow_gap, fast_gap = min(hmed) / max(bmed), min(bmed) / max(hmed)
        runs_differ = _runs_differ(bmed, hmed, policy.alpha)
        slower_runs = runs_differ and slow_gap >= band and slow_gap > spread
        faster_runs = runs_differ and fast_gap >= band and fast_gap > spread
    if significant and ratio >= band and lo > 1 and slower_runs:
        verdict = Verdict.SLOWER
    elif significant and 1.0 / ratio >= band and hi < 1 and faster_runs:
        verdict = Verdict.FASTER
    elif 1.0 / band < lo and hi < band:
        verdict = Verdict.SAME
    else:
        verdict = Verdict.UNCERTAIN
    return SampleComparison(verdict, ratio, lo, hi, p, nb, nh)


def compare_samples(
    base: Sequence[float] | np.ndarray,
    head: Sequence[float] | np.ndarray,
    policy: ComparePolicy = ComparePolicy(),
) -> SampleComparison:
    """Verdict on two sets of raw samples, each from one run."""
    return compare_runs([base], [head], policy)


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


@dataclass(frozen=True)
class RowComparison:
    key: dict[str, Any]
    verdict: Verdict
    base_status: str | None  # None: the row is absent on that side
    head_status: str | None
    base_median_ms: float | None = None
    head_median_ms: float | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    n_base: int = 0
    n_head: int = 0
    note: str = ""

    @property
    def change(self) -> str:
        if self.verdict in (Verdict.SLOWER, Verdict.FASTER, Verdict.SAME, Verdict.UNCERTAIN):
            return wording(self.verdict, math.nan if self.ratio is None else self.ratio)
        if self.verdict is Verdict.BROKEN:
            return f"broken: {self.head_status}"
        if self.verdict is Verdict.NOT_OK:
            return f"{self.base_status} -> {self.head_status}"
        return self.verdict.value


@dataclass(frozen=True)
class Side:
    """Where a result set came from."""

    directory: str
    commit: str | None
    dirty: bool | None
    schema_version: int

    @classmethod
    def of(cls, results: ResultSet) -> Side:
        git = results.meta.get("git") or {}
        ab = results.meta.get("ab") or {}
        return cls(
            directory=str(results.directory),
            commit=ab.get("commit") or git.get("commit"),
            dirty=git.get("dirty"),
            schema_version=int(results.meta.get("schema_version", RESULT_SCHEMA_VERSION)),
        )

    @property
    def short(self) -> str:
        return (self.commit or "unknown")[:8] + ("-dirty" if self.dirty else "")


@dataclass(frozen=True)
class Comparison:
    base: Side
    head: Side
    policy: ComparePolicy
    rows: tuple[RowComparison, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def counts(self) -> dict[Verdict, int]:
        out = {v: 0 for v in Verdict}
        for row in self.rows:
            out[row.verdict] += 1
        return out

    def headline(self) -> str:
        """'2 slower, 1 faster, 40 same' (verdicts with no rows left out)."""
        counts = self.counts()
        parts = [f"{counts[v]} {v.value}" for v in (*CHANGED, *UNCHANGED) if counts[v]]
        return ", ".join(parts) if parts else "no rows"

    def regressions(self, backends: Iterable[str] = ()) -> list[RowComparison]:
        """Slower or newly broken rows, of the given backends only when some are given."""
        wanted = set(backends)
        return [
            r
            for r in self.rows
            if r.verdict in REGRESSIONS and (not wanted or r.key["backend"] in wanted)
        ]


def _key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(_plain(row[k]) for k in KEY_COLUMNS)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python values, NaN -> None, so keys compare and serialise."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _rows_by_key(results: ResultSet) -> dict[tuple[Any, ...], dict[str, Any]]:
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for record in results.rows.to_dict("records"):
        row = {str(k): _plain(v) for k, v in record.items()}
        key = _key(row)
        if key in out:
            raise CompareError(
                f"{results.directory} holds two rows for {dict(zip(KEY_COLUMNS, key, strict=True))}"
            )
        out[key] = row
    return out


def _samples_by_key(results: ResultSet) -> dict[tuple[Any, ...], list[np.ndarray]]:
    """Raw samples of each row, split by the optional `run` column (merged A/B sides)."""
    frame = results.samples
    if frame.empty:
        return {}
    out: dict[tuple[Any, ...], list[np.ndarray]] = {}
    for key, group in frame.groupby(list(KEY_COLUMNS), sort=False, dropna=False):
        runs = [group] if RUN_COLUMN not in group else [g for _, g in group.groupby(RUN_COLUMN)]
        out[tuple(_plain(k) for k in key)] = [g["ms"].to_numpy(dtype=np.float64) for g in runs]
    return out


def compare_rows(
    key: tuple[Any, ...],
    base: Mapping[str, Any] | None,
    head: Mapping[str, Any] | None,
    base_samples: Sequence[np.ndarray] | None,
    head_samples: Sequence[np.ndarray] | None,
    policy: ComparePolicy,
) -> RowComparison:
    named = dict(zip(KEY_COLUMNS, key, strict=True))
    if base is None or head is None:
        present = head if base is None else base
        assert present is not None
        return RowComparison(
            key=named,
            verdict=Verdict.ADDED if base is None else Verdict.REMOVED,
            base_status=None if base is None else base["status"],
            head_status=None if head is None else head["status"],
            base_median_ms=None if base is None else base.get("median_ms"),
            head_median_ms=None if head is None else head.get("median_ms"),
            note=present.get("reason") or "",
        )
    bs, hs = base["status"], head["status"]
    common: dict[str, Any] = dict(
        key=named,
        base_status=bs,
        head_status=hs,
        base_median_ms=base.get("median_ms"),
        head_median_ms=head.get("median_ms"),
    )
    if bs != Status.OK or hs != Status.OK:
        reasons = [
            f"{side}: {r['reason']}"
            for side, r in (("base", base), ("head", head))
            if r["status"] != Status.OK and r.get("reason")
        ]
        if len(reasons) == 2 and base["reason"] == head["reason"]:
            reasons = [base["reason"]]  # both sides give the same reason: say it once
        verdict = Verdict.BROKEN if bs == Status.OK and hs in FAILED else Verdict.NOT_OK
        return RowComparison(**common, verdict=verdict, note="; ".join(reasons))
    s = compare_runs(base_samples or [], head_samples or [], policy)
    return RowComparison(
        **common,
        verdict=s.verdict,
        ratio=None if math.isnan(s.ratio) else s.ratio,
        ci_low=None if math.isnan(s.ci_low) else s.ci_low,
        ci_high=None if math.isnan(s.ci_high) else s.ci_high,
        p_value=None if math.isnan(s.p_value) else s.p_value,
        n_base=s.n_base,
        n_head=s.n_head,
        note=s.note,
    )


# Environment fields whose difference makes a comparison suspect: (label, getter).
def _gpus(meta: Mapping[str, Any]) -> str:
    return ", ".join(str(d.get("name")) for d in meta.get("cuda_devices") or []) or "none"


def _drivers(meta: Mapping[str, Any]) -> str:
    devices = (meta.get("nvml") or {}).get("devices") or []
    return ", ".join(sorted({str(d.get("driver")) for d in devices})) or "unknown"


_ENV_FIELDS = (
    ("GPU", _gpus),
    ("driver", _drivers),
    ("torch", lambda m: str(m.get("torch"))),
    ("CUDA", lambda m: str(m.get("torch_cuda"))),
    ("triton", lambda m: str(m.get("triton"))),
    ("CPU", lambda m: str(m.get("cpu"))),
)


def environment_warnings(base: Mapping[str, Any], head: Mapping[str, Any]) -> list[str]:
    """One line per environment field that differs between the two runs."""
    out = []
    for label, get in _ENV_FIELDS:
        b, h = get(base), get(head)
        if b != h:
            out.append(f"{label} differs: {b} (base) vs {h} (head)")
    return out


def device_names(results: ResultSet) -> list[str]:
    """The device models a result set's rows were measured on ("" for older results)."""
    if "device_name" not in results.rows.columns:
        return []
    return sorted({str(d) for d in results.rows["device_name"].dropna() if str(d)})


def compare_results(
    base: ResultSet,
    head: ResultSet,
    policy: ComparePolicy = ComparePolicy(),
    across_devices: bool = False,
) -> Comparison:
    """Match rows on KEY_COLUMNS (suite included) and compare each pair.

    Runs measured on different device models are refused (a CompareError) unless
    across_devices: then the verdicts compare the devices, not the code.
    """
    base_side, head_side = Side.of(base), Side.of(head)
    bdev, hdev = device_names(base), device_names(head)
    if not across_devices and bdev and hdev and bdev != hdev:
        raise CompareError(
            f"{base.directory} was measured on {', '.join(bdev)} but {head.directory} on "
            f"{', '.join(hdev)}: refusing to compare devices (--across-devices to do it)"
        )
    if base_side.schema_version != head_side.schema_version:
        raise CompareError(
            f"result schema {base_side.schema_version} (base) vs {head_side.schema_version} "
            "(head): re-run both sides with the same invbench version"
        )
    for column, default in (("suite", "?"), ("level", "op")):  # rows of these never match
        b, h = (
            ", ".join(sorted(set(rs.rows[column].astype(str)))) if column in rs.rows else default
            for rs in (base, head)
        )
        if b != h:
            raise CompareError(f"base is {column} {b} but head is {column} {h}: no row can match")
    brows, hrows = _rows_by_key(base), _rows_by_key(head)
    bsamples, hsamples = _samples_by_key(base), _samples_by_key(head)
    keys = list(brows) + [k for k in hrows if k not in brows]
    rows = tuple(
        compare_rows(k, brows.get(k), hrows.get(k), bsamples.get(k), hsamples.get(k), policy)
        for k in keys
    )
    return Comparison(
        base=base_side,
        head=head_side,
        policy=policy,
        rows=rows,
        warnings=tuple(environment_warnings(base.meta, head.meta)),
    )


def _schema_of(directory: Path) -> Any:
    meta_path = directory / META_FILE
    if not meta_path.exists():
        return RESULT_SCHEMA_VERSION
    try:
        return json.loads(meta_path.read_text()).get("schema_version", RESULT_SCHEMA_VERSION)
    except (OSError, ValueError) as exc:
        raise CompareError(f"{meta_path}: unreadable: {exc}") from None


def load_pair(base_dir: Path, head_dir: Path) -> tuple[ResultSet, ResultSet]:
    """Load two result directories; a CompareError for anything that stops a comparison."""
    for directory in (base_dir, head_dir):
        if not directory.is_dir():
            raise CompareError(f"{directory} is not a directory")
    bv, hv = _schema_of(base_dir), _schema_of(head_dir)
    if bv != hv:
        raise CompareError(
            f"{base_dir} has result schema {bv} but {head_dir} has schema {hv}: "
            "refusing to compare; re-run both with the same invbench version"
        )
    try:
        return load_results(base_dir), load_results(head_dir)
    except ResultsError as exc:
        raise CompareError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise CompareError(f"cannot read results: {exc}") from None


def compare_dirs(
    base_dir: Path,
    head_dir: Path,
    policy: ComparePolicy = ComparePolicy(),
    across_devices: bool = False,
) -> Comparison:
    base, head = load_pair(Path(base_dir), Path(head_dir))
    return compare_results(base, head, policy, across_devices)


def comparison_frame(comparison: Comparison) -> pd.DataFrame:
    """One row per matched key, for notebooks and reports."""
    records = []
    for r in comparison.rows:
        records.append(
            {
                **r.key,
                "verdict": r.verdict.value,
                "change": r.change,
                "base_status": r.base_status,
                "head_status": r.head_status,
                "base_median_ms": r.base_median_ms,
                "head_median_ms": r.head_median_ms,
                "ratio": r.ratio,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
                "p_value": r.p_value,
                "n_base": r.n_base,
                "n_head": r.n_head,
                "note": r.note,
            }
        )
    return pd.DataFrame.from_records(records)
