"""The health warnings printed after a run: every row when few are flagged, else a summary.

On a small or busy machine most rows can be noisy or unconverged; one line per
warning would be as long as the results. Past a few flagged rows the run prints one
line per kind of warning instead (how many rows, the worst one, what to do), and
points to the files, whose `warnings` column keeps every warning of every row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table

from invbench.core.spec import Status
from invbench.storage.results import ResultRow

LIST_UP_TO = 5  # flagged rows listed one by one; more are summarised

# What to do about each kind of warning (the text before its first colon).
ADVICE = {
    "noisy": "other load on the machine: close it, or give rows longer with --max-time",
    "unconverged": "the time cap came first: raise --max-time, or fix --samples N",
    "short": "launch and timer overhead dominate: time a larger --batch",
    "throttled": "the GPU slowed for power or heat: let it cool, check its cooling",
    "low clock": "the GPU ran below its clocks: check power limits and other load",
    "shared GPU": "other processes used the GPU: run alone",
    "interpreted": "the Triton interpreter was timed: time Triton on a GPU",
    "launch latency not hidden": "short kernels exposed their launch: see docs/measurement.md",
    "graph capture failed": "timed hot instead of replayed: see the row's warning",
    "drifting": "the machine changed state during the row: rerun with --repeats 3",
    "bimodal": "a fast and a slow state: rerun with --repeats 3, check --threads",
    "runs disagree": "processes land in different states: more --repeats, a quieter host",
    "loaded": "other jobs held the CPUs: run alone, or pin with --affinity",
    "steal": "the hypervisor ran other guests: a dedicated machine, or more --repeats",
    "timer-bound": "the timer's tick is a large part of the row: time a larger --batch",
    "split": "the parts ran in other conditions than the layer: see docs/levels.md",
}
# Kinds that make a row's number unfit to quote as it stands (noisy alone does not:
# a wide spread with many samples can still pin the median down).
DISTRUST = (
    "unconverged",
    "bimodal",
    "drifting",
    "runs disagree",
    "loaded",
    "steal",
    "throttled",
    "low clock",
    "interpreted",
    "timer-bound",
)
UNTRUSTED_LINES = 40  # rows named one by one; more are counted
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def kind_of(warning: str) -> str:
    """The kind of a warning: a known prefix, else the text before its first colon."""
    for kind in ADVICE:
        if warning.startswith(kind):
            return kind
    return warning.split(":", 1)[0].strip()


def _severity(warning: str) -> float:
    """The first number after the colon (IQR %, CI %, ...): larger is worse."""
    found = _NUMBER.search(warning.split(":", 1)[-1])
    return float(found.group()) if found else 0.0


def _label(row: ResultRow) -> str:
    name = row.model or row.backend
    return f"{row.case} {row.dtype} {row.mode} {name}"


@dataclass(frozen=True)
class KindSummary:
    kind: str
    rows: int
    worst: str  # the flagged row whose warning of this kind is largest, with that warning
    advice: str


def summarise(rows: Sequence[ResultRow]) -> list[KindSummary]:
    """One entry per kind of warning, most frequent first."""
    found: dict[str, list[tuple[float, ResultRow, str]]] = {}
    for row in rows:
        for warning in filter(None, row.warnings.split("; ")):
            found.setdefault(kind_of(warning), []).append((_severity(warning), row, warning))
    out = []
    for kind, hits in sorted(found.items(), key=lambda item: -len(item[1])):
        _, row, warning = max(hits, key=lambda hit: hit[0])
        detail = warning.split(":", 1)[1].strip() if ":" in warning else warning
        out.append(
            KindSummary(
                kind=kind,
                rows=len({id(r) for _, r, _ in hits}),
                worst=f"{_label(row)}: {detail}",
                advice=ADVICE.get(kind, "see docs/measurement.md"),
            )
        )
    return out


def health_table(rows: Sequence[ResultRow], where: str = "") -> Table | None:
    """The health warnings of a run; None when every row is clean.

    Up to LIST_UP_TO flagged rows: one line per warning. More: one line per kind, and
    a caption naming `where` the full list is (the results file's warnings column).
    """
    flagged = [r for r in rows if r.warnings]
    if not flagged:
        return None
    if len(flagged) <= LIST_UP_TO:
        return _every_warning(flagged)
    ok = sum(r.status == Status.OK for r in rows)
    table = Table(
        title=f"health warnings: {len(flagged)} of {ok} ok rows",
        caption=f"every row's warnings: the warnings column of {where or 'results.csv'}",
        show_lines=False,
    )
    for col in ("warning", "rows", "worst row", "what to do"):
        table.add_column(col, justify="right" if col == "rows" else "left")
    for s in summarise(flagged):
        table.add_row(s.kind, str(s.rows), s.worst, s.advice)
    return table


def _every_warning(flagged: Sequence[ResultRow]) -> Table:
    table = Table(title="health warnings", show_lines=False)
    for col in ("case", "dtype", "mode", "backend", "warning"):
        table.add_column(col, no_wrap=col != "warning")
    for r in flagged:
        for i, warning in enumerate(r.warnings.split("; ")):
            if i == 0:
                name = f"{r.model} ({r.backend})" if r.model else r.backend
                table.add_row(r.case, r.dtype, r.mode, name, warning)
            else:
                table.add_row("", "", "", "", warning)
    return table


def untrusted_lines(rows: Sequence[ResultRow], where: str = "") -> list[str]:
    """One plain line for each row whose number should not be trusted, and why."""
    lines = []
    for row in rows:
        warnings = [w for w in filter(None, row.warnings.split("; ")) if kind_of(w) in DISTRUST]
        if warnings:
            lines.append(f"do not trust {_label(row)}: {'; '.join(warnings)}")
    if len(lines) > UNTRUSTED_LINES:
        rest = len(lines) - UNTRUSTED_LINES
        where = where or "results.csv"
        lines = [
            *lines[:UNTRUSTED_LINES],
            f"... and {rest} more rows: the warnings column of {where}",
        ]
    return lines
