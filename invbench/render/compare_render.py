"""A Comparison as a rich table, a pull-request markdown comment, or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.table import Table

from invbench.analysis.compare import CHANGED, UNCHANGED, Comparison, RowComparison, Verdict
from invbench.core.choices import OutputFormat
from invbench.core.formatting import fmt_ms, md_escape

_STYLE = {
    Verdict.SLOWER: "bold red",
    Verdict.BROKEN: "bold red",
    Verdict.FASTER: "bold green",
    Verdict.ADDED: "cyan",
    Verdict.REMOVED: "cyan",
    Verdict.UNCERTAIN: "yellow",
    Verdict.NOT_COMPARABLE: "bold magenta",
    Verdict.NOT_OK: "dim",
    Verdict.SAME: "",
}
_ORDER = {v: i for i, v in enumerate((*CHANGED, *UNCHANGED))}


def _label(row: RowComparison) -> list[str]:
    k = row.key
    return [str(k["case"]), str(k["backend"]), str(k["dtype"]), str(k["mode"]), str(k["device"])]


def _ci(row: RowComparison) -> str:
    if row.ci_low is None or row.ci_high is None:
        return "-"
    return f"{row.ci_low:.3f}-{row.ci_high:.3f}"


def _p(row: RowComparison) -> str:
    return "-" if row.p_adjusted is None else f"{row.p_adjusted:.2g}"


def _mde(row: RowComparison) -> str:
    if row.mde is None:
        return "-"
    return f"{row.mde:.1%}" if row.mde < 1 else ">100%"


def _runs(row: RowComparison) -> str:
    return f"{row.runs_base}/{row.runs_head}" if row.runs_base or row.runs_head else "-"


def _cells(row: RowComparison) -> list[str]:
    base = fmt_ms(row.base_median_ms) if row.base_status == "ok" else (row.base_status or "absent")
    head = fmt_ms(row.head_median_ms) if row.head_status == "ok" else (row.head_status or "absent")
    return [
        *_label(row),
        base,
        head,
        row.change,
        _ci(row),
        _p(row),
        _mde(row),
        _runs(row),
        row.note,
    ]


HEADERS = (
    "case",
    "backend",
    "dtype",
    "mode",
    "device",
    "base",
    "head",
    "change",
    "ratio CI",
    "p adj",
    "MDE",
    "runs",
    "note",
)


def sorted_rows(rows: Sequence[RowComparison]) -> list[RowComparison]:
    return sorted(rows, key=lambda r: _ORDER[r.verdict])


def subtitle(c: Comparison) -> str:
    p = c.policy
    adjusted = f"{p.correction.value}-adjusted p < {p.alpha:g}"
    if c.paired:
        how = f"the pairs of runs timed together differ (paired t-test, {adjusted})"
        interval = "paired t-interval over the pairs"
    else:
        how = f"the runs differ ({adjusted})"
        interval = "bootstrap over runs"
    return (
        f"base {c.base.short} vs head {c.head.short}; a change is called when {how} and "
        f"the ratio of run medians is beyond {p.threshold:.0%}; ratio CI: {p.confidence:.0%} "
        f"{interval}; MDE: the smallest change a row could call; runs: base/head"
    )


def rich_table(c: Comparison) -> Table:
    table = Table(title=c.headline(), caption=subtitle(c), caption_justify="left")
    for h in HEADERS:
        table.add_column(h, justify="right" if h in ("base", "head", "p adj", "MDE") else "left")
    for row in sorted_rows(c.rows):
        table.add_row(*_cells(row), style=_STYLE[row.verdict])
    return table


def _md_table(rows: Sequence[RowComparison]) -> list[str]:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in rows:
        lines.append("| " + " | ".join(md_escape(x) for x in _cells(row)) + " |")
    return lines


def markdown(c: Comparison) -> str:
    """Headline line, environment warnings, changed rows, unchanged rows folded."""
    changed = [r for r in sorted_rows(c.rows) if r.verdict in CHANGED]
    unchanged = [r for r in sorted_rows(c.rows) if r.verdict in UNCHANGED]
    lines = [f"**invbench**: {c.headline()}", "", subtitle(c) + ".", ""]
    for warning in c.warnings:
        lines += [f"> **Warning:** {md_escape(warning)}: the runs may not be comparable.", ""]
    if changed:
        lines += [*_md_table(changed), ""]
    else:
        lines += ["No row changed beyond the threshold.", ""]
    if unchanged:
        lines += [
            "<details>",
            f"<summary>{len(unchanged)} rows without a called change</summary>",
            "",
            *_md_table(unchanged),
            "",
            "</details>",
            "",
        ]
    return "\n".join(lines)


def as_dict(c: Comparison) -> dict[str, Any]:
    return {
        "headline": c.headline(),
        "counts": {v.value: n for v, n in c.counts().items()},
        "base": asdict(c.base),
        "head": asdict(c.head),
        "policy": asdict(c.policy),
        "paired": c.paired,
        "warnings": list(c.warnings),
        "rows": [{**asdict(r), "verdict": r.verdict.value, "change": r.change} for r in c.rows],
    }


def to_json(c: Comparison) -> str:
    return json.dumps(as_dict(c), indent=2, allow_nan=False) + "\n"


def render_text(c: Comparison, fmt: OutputFormat) -> str:
    """markdown or json text (the table format is printed through rich instead)."""
    if fmt is OutputFormat.MARKDOWN:
        return markdown(c)
    if fmt is OutputFormat.JSON:
        return to_json(c)
    raise ValueError(f"{fmt} is not a text format")


def write_comparison_files(c: Comparison, directory: Path) -> None:
    """compare.md (for a pull-request comment) and compare.json beside an ab run's sides."""
    (directory / "compare.md").write_text(markdown(c))
    (directory / "compare.json").write_text(to_json(c))
