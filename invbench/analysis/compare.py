"""Compare two result sets row by row: match rows, judge them together, gate.

Rows are matched on KEY_COLUMNS. A pair of ok rows is judged on its runs (see
`invbench.analysis.verdicts`: the run is the unit of inference, false alarms are
controlled over all judged rows, every row states what it could have detected).
Before that, a pair measured differently is `not comparable`
(`invbench.analysis.comparability`), and afterwards a change on a throttled row, or
on a noisy or unconverged row whose run-to-run noise was not measured with it, is
downgraded to `uncertain` with the reason. Rows that are not ok on a side never get
a speed verdict.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from invbench.analysis.comparability import (
    environment_warnings,
    row_differences,
    row_flags,
    run_differences,
)
from invbench.analysis.verdicts import (
    BetweenRunNoise,
    CompareError,
    ComparePolicy,
    Judgement,
    NoiseLookup,
    RunEvidence,
    Verdict,
    judge,
    run_evidence,
    wording,
)
from invbench.core.spec import Status
from invbench.storage.merge import RUN_COLUMN
from invbench.storage.results import (
    KEY_COLUMNS,
    META_FILE,
    RESULT_SCHEMA_VERSION,
    ResultsError,
    ResultSet,
    device_names,
    load_results,
)

__all__ = [
    "CHANGED",
    "FAILED",
    "REGRESSIONS",
    "RUN_COLUMN",
    "UNCHANGED",
    "BetweenRunNoise",
    "CompareError",
    "ComparePolicy",
    "Comparison",
    "RowComparison",
    "Side",
    "Verdict",
    "compare_dirs",
    "compare_results",
    "comparison_frame",
    "load_pair",
]

DEFAULT_POLICY = ComparePolicy()
# Statuses that mean the code broke, as opposed to "cannot run here" (skipped): every
# status but ok and skipped, so a head that crashes or hangs is a regression too.
FAILED = frozenset(s.value for s in Status) - {Status.OK.value, Status.SKIPPED.value}

# Verdicts that are changes a pull request should hear about, in display order.
CHANGED = (
    Verdict.SLOWER,
    Verdict.BROKEN,
    Verdict.FASTER,
    Verdict.NOT_COMPARABLE,
    Verdict.ADDED,
    Verdict.REMOVED,
)
UNCHANGED = (Verdict.UNCERTAIN, Verdict.NOT_OK, Verdict.SAME)
REGRESSIONS = frozenset({Verdict.SLOWER, Verdict.BROKEN})


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
    p_value: float | None = None  # run-level t-test, unadjusted
    p_adjusted: float | None = None  # after Holm or Benjamini-Hochberg over the judged rows
    mde: float | None = None  # smallest relative change this row could have called
    n_base: int = 0
    n_head: int = 0
    runs_base: int = 0
    runs_head: int = 0
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
    paired: bool = False  # base run i and head run i ran in lockstep (invbench ab)

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


def _status_row(
    key: dict[str, Any], base: Mapping[str, Any] | None, head: Mapping[str, Any] | None
) -> RowComparison | None:
    """The verdict of a pair that gets no speed verdict (absent or not ok), else None."""
    if base is None or head is None:
        present = head if base is None else base
        assert present is not None
        return RowComparison(
            key=key,
            verdict=Verdict.ADDED if base is None else Verdict.REMOVED,
            base_status=None if base is None else base["status"],
            head_status=None if head is None else head["status"],
            base_median_ms=None if base is None else base.get("median_ms"),
            head_median_ms=None if head is None else head.get("median_ms"),
            note=present.get("reason") or "",
        )
    bs, hs = base["status"], head["status"]
    if bs == Status.OK and hs == Status.OK:
        return None
    reasons = [
        f"{side}: {r['reason']}"
        for side, r in (("base", base), ("head", head))
        if r["status"] != Status.OK and r.get("reason")
    ]
    if len(reasons) == 2 and base["reason"] == head["reason"]:
        reasons = [base["reason"]]  # both sides give the same reason: say it once
    return RowComparison(
        key=key,
        verdict=Verdict.BROKEN if bs == Status.OK and hs in FAILED else Verdict.NOT_OK,
        base_status=bs,
        head_status=hs,
        base_median_ms=base.get("median_ms"),
        head_median_ms=head.get("median_ms"),
        note="; ".join(reasons),
    )


def _none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _judged_row(
    key: dict[str, Any],
    base: Mapping[str, Any],
    head: Mapping[str, Any],
    ev: RunEvidence,
    j: Judgement,
) -> RowComparison:
    """A judged pair, downgraded to uncertain where a change cannot be trusted."""
    verdict, notes = j.verdict, [j.note] if j.note else []
    for side, row in (("base", base), ("head", head)):
        untrusted, noisy = row_flags(row)
        # with replicates, a noisy row's run-to-run variance already holds its noise
        doubtful = untrusted + (noisy if ev.df == 0 else [])
        if doubtful and verdict in (Verdict.SLOWER, Verdict.FASTER):
            notes.append(f"{wording(verdict, j.ratio)} not called: {side} {doubtful[0]}")
            verdict = Verdict.UNCERTAIN
        elif untrusted or noisy:
            notes.append(f"{side} {(untrusted + noisy)[0]}")
    return RowComparison(
        key=key,
        verdict=verdict,
        base_status=base["status"],
        head_status=head["status"],
        base_median_ms=base.get("median_ms"),
        head_median_ms=head.get("median_ms"),
        ratio=_none(j.ratio),
        ci_low=_none(j.ci_low),
        ci_high=_none(j.ci_high),
        p_value=_none(j.p_value),
        p_adjusted=_none(j.p_adjusted),
        mde=_none(j.mde),
        n_base=ev.n_base,
        n_head=ev.n_head,
        runs_base=ev.k_base,
        runs_head=ev.k_head,
        note="; ".join(notes),
    )


def compare_results(
    base: ResultSet,
    head: ResultSet,
    policy: ComparePolicy = DEFAULT_POLICY,
    across_devices: bool = False,
    noise: NoiseLookup | None = None,
) -> Comparison:
    """Match rows on KEY_COLUMNS (suite included) and judge every ok pair together.

    noise: the between-run spread of a row known from outside the two sides (the
    base's history on this machine), looked up by the row's key; --noise-cv (the
    policy's noise_cv) applies to every row that this lookup leaves without one.
    """
    base_side, head_side = Side.of(base), Side.of(head)
    bdev, hdev = sorted(device_names(base.rows)), sorted(device_names(head.rows))
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
        bv, hv = (
            ", ".join(sorted(set(rs.rows[column].astype(str)))) if column in rs.rows else default
            for rs in (base, head)
        )
        if bv != hv:
            raise CompareError(f"base is {column} {bv} but head is {column} {hv}: no row can match")
    run_diff = run_differences(base.meta, head.meta)
    paired = is_paired(base.meta, head.meta)
    brows, hrows = _rows_by_key(base), _rows_by_key(head)
    bsamples, hsamples = _samples_by_key(base), _samples_by_key(head)
    keys = list(brows) + [k for k in hrows if k not in brows]
    rows: dict[tuple[Any, ...], RowComparison] = {}
    judged: list[tuple[tuple[Any, ...], RunEvidence]] = []
    for k in keys:
        named = dict(zip(KEY_COLUMNS, k, strict=True))
        b, h = brows.get(k), hrows.get(k)
        status_row = _status_row(named, b, h)
        if status_row is not None:
            rows[k] = status_row
            continue
        assert b is not None and h is not None
        differs = run_diff + row_differences(b, h)
        if differs:
            rows[k] = RowComparison(
                key=named,
                verdict=Verdict.NOT_COMPARABLE,
                base_status=b["status"],
                head_status=h["status"],
                base_median_ms=b.get("median_ms"),
                head_median_ms=h.get("median_ms"),
                note="measured differently: " + "; ".join(differs),
            )
            continue
        external = noise(named) if noise is not None else None
        if external is None and policy.noise_cv is not None:
            external = BetweenRunNoise(policy.noise_cv, 0, "--noise-cv")
        ev = run_evidence(
            bsamples.get(k) or [], hsamples.get(k) or [], policy, external, paired=paired
        )
        judged.append((k, ev))
    judgements = judge([ev for _, ev in judged], policy)
    for (k, ev), j in zip(judged, judgements, strict=True):
        named = dict(zip(KEY_COLUMNS, k, strict=True))
        rows[k] = _judged_row(named, brows[k], hrows[k], ev, j)
    return Comparison(
        base=base_side,
        head=head_side,
        policy=policy,
        rows=tuple(rows[k] for k in keys),
        warnings=tuple(environment_warnings(base.meta, head.meta)),
        paired=paired,
    )


def is_paired(base_meta: Mapping[str, Any], head_meta: Mapping[str, Any]) -> bool:
    """Both sides are of one lockstep `invbench ab`: run i of each was timed together."""
    b, h = base_meta.get("ab") or {}, head_meta.get("ab") or {}
    token = b.get("pairing")
    return bool(token) and token == h.get("pairing") and b.get("side") != h.get("side")


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
    policy: ComparePolicy = DEFAULT_POLICY,
    across_devices: bool = False,
    noise: NoiseLookup | None = None,
) -> Comparison:
    base, head = load_pair(Path(base_dir), Path(head_dir))
    return compare_results(base, head, policy, across_devices, noise)


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
                "p_adjusted": r.p_adjusted,
                "mde": r.mde,
                "n_base": r.n_base,
                "n_head": r.n_head,
                "runs_base": r.runs_base,
                "runs_head": r.runs_head,
                "note": r.note,
            }
        )
    return pd.DataFrame.from_records(records)
