"""The history in the terminal and in CI: series with their noise band, steps as a table,
markdown or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from invbench.analysis.history.changepoints import Analysis, Step
from invbench.analysis.history.links import range_url
from invbench.analysis.history.series import sparkline
from invbench.core.formatting import fmt_ms


def _band(analysis: Analysis) -> str:
    seg = analysis.segments[-1]
    if seg.low_ms is None or seg.high_ms is None:
        return "?"
    return f"{fmt_ms(seg.low_ms)} - {fmt_ms(seg.high_ms)}"


def machines_table(analyses: Sequence[Analysis]) -> Table:
    table = Table(title="machines")
    table.add_column("id")
    table.add_column("machine")
    seen = {a.series.machine_id: a.series.machine for a in analyses}
    for machine_id, label in sorted(seen.items(), key=lambda kv: kv[1]):
        table.add_row(machine_id[:6], label)
    return table


def series_table(analyses: Sequence[Analysis], title: str = "history") -> Table:
    table = Table(title=title)
    for col in ("suite", "case", "backend", "dtype", "mode", "machine", "commits"):
        table.add_column(col, justify="right" if col == "commits" else "left")
    for col in ("latest", "level", "noise band", "noise"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("steps", overflow="fold")
    table.add_column("over commits (oldest left)", no_wrap=True)
    for a in analyses:
        s = a.series
        seg = a.segments[-1]
        steps = ", ".join(f"{st.size:+.0%}@{st.bad.commit[:7]}" for st in a.steps) or "-"
        table.add_row(
            s.suite,
            str(s.key["case"]),
            str(s.key["backend"]),
            str(s.key["dtype"]),
            str(s.key["mode"]),
            s.machine_id[:6],
            str(len(s.points)),
            fmt_ms(s.points[-1].ms),
            fmt_ms(seg.level_ms),
            _band(a),
            "?" if seg.noise is None else f"±{seg.noise:.1%}",
            steps,
            sparkline(list(s.values), width=24),
        )
    return table


def step_record(analysis: Analysis, step: Step, template: str | None) -> dict[str, Any]:
    s = analysis.series
    return {
        "suite": s.suite,
        **{k: s.key[k] for k in ("case", "backend", "dtype", "mode")},
        "key": dict(s.key),
        "machine_id": s.machine_id,
        "machine": s.machine,
        "direction": "slower" if step.regression else "faster",
        "size": step.size,
        "before_ms": step.before_ms,
        "after_ms": step.after_ms,
        "confidence": step.confidence,
        "p_value": step.p_value,
        "good_commit": step.good.commit,
        "bad_commit": step.bad.commit,
        "bad_subject": step.bad.subject,
        "url": range_url(template, step.good.commit, step.bad.commit),
    }


def steps_table(records: Sequence[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for col in ("suite", "case", "backend", "dtype", "mode", "machine", "commits (good..bad)"):
        table.add_column(col)
    for col in ("before", "after", "change", "confidence"):
        table.add_column(col, justify="right")
    table.add_column("first commit at the new level")
    for r in records:
        colour = "red" if r["direction"] == "slower" else "green"
        table.add_row(
            r["suite"],
            str(r["case"]),
            str(r["backend"]),
            str(r["dtype"]),
            str(r["mode"]),
            f"[{r['machine_id'][:6]}]",
            f"{r['good_commit'][:8]}..{r['bad_commit'][:8]}",
            fmt_ms(r["before_ms"]),
            fmt_ms(r["after_ms"]),
            f"[{colour}]{r['size']:+.1%}[/]",
            f"{r['confidence']:.2%}",
            r["bad_subject"][:60],
        )
    return table


def steps_markdown(records: Sequence[dict[str, Any]], title: str) -> str:
    lines = [f"### {title}", ""]
    if not records:
        return "\n".join([*lines, "No steps found.", ""])
    lines += [
        "| row | machine | commits | before | after | change | confidence |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in records:
        commits = f"`{r['good_commit'][:8]}..{r['bad_commit'][:8]}`"
        if r["url"]:
            commits = f"[{commits}]({r['url']})"
        row = f"{r['suite']} {r['case']} {r['backend']} {r['dtype']} {r['mode']}"
        lines.append(
            f"| {row} | {r['machine']} | {commits} | {fmt_ms(r['before_ms'])} | "
            f"{fmt_ms(r['after_ms'])} | {r['size']:+.1%} | {r['confidence']:.2%} |"
        )
    return "\n".join([*lines, ""])


def steps_json(records: Sequence[dict[str, Any]]) -> str:
    return json.dumps(records, indent=2, default=str) + "\n"
