"""`invbench report`: a run's numbers as tables for papers and for sharing.

Four tables, one row per case x dtype x mode and one column group per backend:
latency (median and spread), speed-up over a baseline backend, throughput (GB/s and,
when the run measured its bandwidth, % of the memory floor), and peak memory. The
best value of each row is bold. Rendered as Markdown, LaTeX (booktabs, siunitx S
columns), CSV (one wide table) or one self-contained HTML file with the figures
embedded.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from invbench.core.choices import ReportFormat
from invbench.core.formatting import md_escape
from invbench.core.spec import Status
from invbench.measure.ceiling_record import measured_ceilings, roof_ms
from invbench.render.plots.caption import caption_details, caption_line
from invbench.render.plots.data import (
    MIB,
    PlotError,
    all_rows,
    backends_in,
    health_warnings,
    label_order,
    ok_rows,
)
from invbench.storage.results import ResultSet

DEFAULT_BASELINE = "unfold"


Best = Literal["min", "max"]
RowKey = tuple[str, str, str]  # (case label, dtype, mode)
Cell = float | str | None  # a number, the status of a row that did not run, or nothing


@dataclass(frozen=True)
class Metric:
    key: str  # column of the CSV: BACKEND.key
    header: str
    unit: str
    best: Best | None = None  # bold the best value of each row by this rule


@dataclass
class Table:
    name: str
    title: str
    metrics: list[Metric]
    backends: list[str]
    rows: list[RowKey]
    cells: dict[tuple[RowKey, str, str], Cell] = field(default_factory=dict)
    note: str = ""

    def cell(self, row: RowKey, backend: str, metric: str) -> Cell:
        return self.cells.get((row, backend, metric))

    def best(self, row: RowKey, metric: Metric) -> float | None:
        """The best number of this row and metric across backends (None without a rule)."""
        if metric.best is None:
            return None
        values = [
            v
            for b in self.backends
            if isinstance(v := self.cell(row, b, metric.key), float) and math.isfinite(v)
        ]
        if len(values) < 2 or len({fmt_number(v) for v in values}) == 1:
            return None  # nothing to choose between: no bold
        return min(values) if metric.best == "min" else max(values)

    def is_best(self, row: RowKey, backend: str, metric: Metric) -> bool:
        best = self.best(row, metric)
        v = self.cell(row, backend, metric.key)
        return best is not None and isinstance(v, float) and fmt_number(v) == fmt_number(best)


@dataclass
class Report:
    title: str
    caption: str
    details: list[str]
    tables: list[Table]
    warnings: list[str] = field(default_factory=list)  # rows with health warnings


# ---------------------------------------------------------------------------------------
# Numbers


def fmt_number(v: float, sig: int = 3) -> str:
    """Plain decimal with `sig` significant digits (integers keep all theirs): no exponent,
    no thousands separator, so siunitx, spreadsheets and parsers all read it."""
    if not math.isfinite(v):
        return "nan"
    if v == 0:
        return "0"
    digits = max(0, sig - 1 - math.floor(math.log10(abs(v))))
    text = f"{v:.{digits}f}"
    return "0" if float(text) == 0 else text


def _status_text(status: str) -> str:
    return {
        Status.OOM.value: "OOM",
        Status.SKIPPED.value: "skipped",
        Status.ERROR.value: "error",
        Status.INCORRECT.value: "wrong",
    }.get(status, status)


# ---------------------------------------------------------------------------------------
# Building the tables


def _row_keys(rows: pd.DataFrame) -> list[RowKey]:
    labels = label_order(rows)
    pairs = list(dict.fromkeys(zip(rows["dtype"], rows["mode"], strict=True)))
    present = set(zip(rows["label"], rows["dtype"], rows["mode"], strict=True))
    return [(lab, d, m) for d, m in pairs for lab in labels if (lab, d, m) in present]


def _key(r: Any) -> RowKey:
    return (str(r["label"]), str(r["dtype"]), str(r["mode"]))


def _mark_failures(table: Table, every: pd.DataFrame) -> None:
    """Rows that did not run show their status in their group's first column."""
    first = table.metrics[0].key
    for _, r in every.iterrows():
        if r["status"] != Status.OK.value and r["backend"] in table.backends:
            table.cells.setdefault((_key(r), str(r["backend"]), first), _status_text(r["status"]))


def latency_table(rs: ResultSet, every: pd.DataFrame, ok: pd.DataFrame) -> Table:
    backends = [b for b in backends_in(rs) if (ok["backend"] == b).any()]
    table = Table(
        "latency",
        "Latency per call: median and spread ((p80 - p20) / median)",
        [Metric("median_ms", "median", "ms", "min"), Metric("spread_pct", "spread", "%")],
        backends,
        _row_keys(every),
    )
    for _, r in ok.iterrows():
        k, b = _key(r), str(r["backend"])
        med = float(r["median_ms"])
        table.cells[(k, b, "median_ms")] = med
        if pd.notna(r["p20_ms"]) and pd.notna(r["p80_ms"]) and med > 0:
            spread = float(r["p80_ms"]) - float(r["p20_ms"])
            table.cells[(k, b, "spread_pct")] = spread / med * 100
    _mark_failures(table, every)
    return table


def speedup_table(rs: ResultSet, every: pd.DataFrame, ok: pd.DataFrame, baseline: str) -> Table:
    base = {_key(r): float(r["median_ms"]) for _, r in ok[ok["backend"] == baseline].iterrows()}
    backends = [b for b in backends_in(rs) if b != baseline and (ok["backend"] == b).any()]
    table = Table(
        "speedup",
        f"Speed-up over {baseline} (its median latency / each backend's; above 1: faster)",
        [Metric("speedup", "speed-up", "x", "max")],
        backends,
        [k for k in _row_keys(every) if k in base],
    )
    for _, r in ok.iterrows():
        k, b = _key(r), str(r["backend"])
        if b == baseline or k not in base:
            continue
        table.cells[(k, b, "speedup")] = base[k] / float(r["median_ms"])
    _mark_failures(table, every[every["backend"] != baseline])
    return table


def throughput_table(rs: ResultSet, every: pd.DataFrame, ok: pd.DataFrame) -> Table:
    """GB/s of the fewest bytes the op must move, % of the measured memory floor, and % of
    the roof (bytes over the copy bandwidth or FLOPs over the matmul peak, the larger)."""
    device = str(ok["device"].iloc[0])
    ceilings = measured_ceilings(rs.meta, device)
    bandwidth = ceilings.bandwidth.value if ceilings and ceilings.bandwidth else None
    has_frac = "roofline_frac" in ok.columns and ok["roofline_frac"].notna().any()
    metrics = [Metric("gbps", "throughput", "GB/s", "max")]
    if bandwidth is not None or has_frac:
        metrics.append(Metric("floor_pct", "of floor", "%"))
    if ceilings is not None:
        metrics.append(Metric("roof_pct", "of roof", "%", "max"))
    backends = [b for b in backends_in(rs) if (ok["backend"] == b).any()]
    note = (
        f"Floor: the fewest bytes over the measured copy bandwidth ({bandwidth:.0f} GB/s)."
        if bandwidth is not None
        else (
            "Floor: from the run's roofline_frac column."
            if has_frac
            else "No measured bandwidth in this run: % of floor omitted."
        )
    )
    table = Table(
        "throughput",
        "Throughput: fewest bytes moved per second",
        metrics,
        backends,
        _row_keys(every),
    )
    if ceilings is not None:
        note += (
            " Roof: the larger of those bytes over the copy bandwidth and the FLOPs over"
            " the measured matmul peak of the row's dtype (bandwidth alone where none)."
        )
    table.note = note
    for _, r in ok.iterrows():
        k, b = _key(r), str(r["backend"])
        if not r["bytes"] or r["bytes"] <= 0:
            continue
        gbps = float(r["bytes"]) / (float(r["median_ms"]) * 1e-3) / 1e9
        table.cells[(k, b, "gbps")] = gbps
        if bandwidth is not None:
            table.cells[(k, b, "floor_pct")] = gbps / bandwidth * 100
        elif has_frac and pd.notna(r["roofline_frac"]):
            table.cells[(k, b, "floor_pct")] = float(r["roofline_frac"]) * 100
        roof = roof_ms(ceilings, float(r["flops"]), float(r["bytes"]), str(r["dtype"]))
        if roof is not None:
            table.cells[(k, b, "roof_pct")] = roof / float(r["median_ms"]) * 100
    _mark_failures(table, every)
    return table


def memory_table(rs: ResultSet, every: pd.DataFrame, ok: pd.DataFrame) -> Table:
    has = ok[ok["peak_mem_bytes"].notna()]
    backends = [b for b in backends_in(rs) if (has["backend"] == b).any()]
    methods = ", ".join(sorted(set(has["mem_method"].astype(str)) - {""})) or "unrecorded"
    table = Table(
        "memory",
        "Peak memory of one call above the memory allocated before it",
        [Metric("peak_mib", "peak", "MiB", "min")],
        backends,
        _row_keys(every),
    )
    table.note = f"Measured by: {methods}."
    for _, r in has.iterrows():
        table.cells[(_key(r), str(r["backend"]), "peak_mib")] = float(r["peak_mem_bytes"]) / MIB
    _mark_failures(table, every)
    return table


def build_report(rs: ResultSet, baseline: str | None = None) -> Report:
    """The report's tables. baseline None: unfold, and no speed-up table without it;
    a baseline named explicitly must have ok rows in the results."""
    baseline_explicit = baseline is not None
    baseline = baseline or DEFAULT_BASELINE
    ok = ok_rows(rs)
    every = all_rows(rs)
    tables = [latency_table(rs, every, ok)]
    if (ok["backend"] == baseline).any():
        tables.append(speedup_table(rs, every, ok, baseline))
    elif baseline_explicit:
        present = ", ".join(backends_in(rs))
        raise PlotError(
            f"baseline backend {baseline!r} has no ok rows in {rs.directory} "
            f"(backends there: {present})"
        )
    tables.append(throughput_table(rs, every, ok))
    if ok["peak_mem_bytes"].notna().any():
        tables.append(memory_table(rs, every, ok))
    run = rs.meta.get("run") or {}
    title = f"invbench report: {run.get('suite') or rs.directory.name}"
    return Report(
        title,
        caption_line(rs, every),
        caption_details(rs, every),
        tables,
        health_warnings(rs),
    )


# ---------------------------------------------------------------------------------------
# Markdown


def _cell_text(v: Cell) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return fmt_number(v)
    return v


def markdown_table(t: Table) -> str:
    header = ["case", "dtype", "mode"]
    for b in t.backends:
        header.extend(f"{b} {m.header} ({m.unit})" for m in t.metrics)
    lines = [
        "| " + " | ".join(md_escape(h) for h in header) + " |",
        "|" + "|".join([":---"] * 3 + ["---:"] * (len(header) - 3)) + "|",
    ]
    for row in t.rows:
        cells = [md_escape(x) for x in row]
        for b in t.backends:
            for m in t.metrics:
                text = md_escape(_cell_text(t.cell(row, b, m.key)))
                cells.append(f"**{text}**" if t.is_best(row, b, m) else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_markdown(report: Report) -> str:
    out = [f"# {report.title}", "", report.caption, ""]
    for t in report.tables:
        out += [f"## {t.title}", "", markdown_table(t), ""]
        if t.note:
            out += [t.note, ""]
    out += ["Bold: the best value of each row.", ""]
    if report.warnings:
        out += ["## Health warnings", ""]
        out += [f"- {md_escape(w)}" for w in report.warnings]
        out += [""]
    out += ["## Run", ""]
    out += [f"- {line}" for line in report.details]
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------------------------
# LaTeX

_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def _tex_unit(unit: str) -> str:
    return "$\\times$" if unit == "x" else tex_escape(unit)


def _table_format(values: Sequence[float]) -> str:
    """siunitx table-format (integer.decimal digits) that fits every formatted value."""
    ints, decs = 1, 0
    for v in values:
        text = fmt_number(v).lstrip("-")
        whole, _, frac = text.partition(".")
        ints, decs = max(ints, len(whole)), max(decs, len(frac))
    return f"{ints}.{decs}"


def latex_table(t: Table) -> str:
    spec = ["l", "l", "l"]
    for b in t.backends:
        for m in t.metrics:
            nums = [
                v
                for row in t.rows
                if isinstance(v := t.cell(row, b, m.key), float) and math.isfinite(v)
            ]
            spec.append(f"S[table-format={_table_format(nums)}]")
    width = len(t.metrics)
    head1 = ["", "", ""]
    head2 = ["{case}", "{dtype}", "{mode}"]
    rules = []
    col = 4
    for b in t.backends:
        if width == 1:
            head1.append(f"{{{tex_escape(b)}}}")
        else:
            head1.append(f"\\multicolumn{{{width}}}{{c}}{{{tex_escape(b)}}}")
        rules.append(f"\\cmidrule(lr){{{col}-{col + width - 1}}}")
        col += width
        head2.extend(f"{{{tex_escape(m.header)} ({_tex_unit(m.unit)})}}" for m in t.metrics)
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        "\\small",
        f"\\caption{{{tex_escape(t.title)}}}",
        f"\\label{{tab:invbench-{t.name}}}",
        f"\\begin{{tabular}}{{{''.join(spec)}}}",
        "\\toprule",
        " & ".join(head1) + " \\\\",
        " ".join(rules),
        " & ".join(head2) + " \\\\",
        "\\midrule",
    ]
    for row in t.rows:
        cells = [tex_escape(x) for x in row]
        for b in t.backends:
            for m in t.metrics:
                v = t.cell(row, b, m.key)
                if isinstance(v, float) and math.isfinite(v):
                    text = fmt_number(v)
                    cells.append(f"\\bfseries {text}" if t.is_best(row, b, m) else text)
                elif v is None:
                    cells.append("{--}")
                else:
                    cells.append(f"{{{tex_escape(str(v))}}}")
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    if t.note:
        lines.append(f"\\par\\smallskip{{\\footnotesize {tex_escape(t.note)}}}")
    lines.append("\\end{table}")
    return "\n".join(lines)


def to_latex(report: Report) -> str:
    out = [
        f"% {tex_escape(report.title)}",
        f"% {report.caption}",
        "% Needs: \\usepackage{booktabs} \\usepackage{siunitx}",
        "% Bold numbers in S columns: \\sisetup{detect-weight=true, mode=text} "
        "(siunitx v2 also: \\usepackage{etoolbox} \\robustify\\bfseries)",
        "",
    ]
    for t in report.tables:
        out += [latex_table(t), ""]
    out += [f"% health warning: {w}" for w in report.warnings]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# CSV: one wide table, BACKEND.metric columns


def to_frame(report: Report) -> pd.DataFrame:
    """Numbers only (NaN where there is none); BACKEND.status says why a row has none."""
    keys: list[RowKey] = []
    for t in report.tables:
        keys.extend(k for k in t.rows if k not in keys)
    records = []
    for k in keys:
        rec: dict[str, Any] = {"case": k[0], "dtype": k[1], "mode": k[2]}
        status: dict[str, str] = {}
        for t in report.tables:
            for b in t.backends:
                for m in t.metrics:
                    v = t.cell(k, b, m.key)
                    rec[f"{b}.{m.key}"] = v if isinstance(v, float) else math.nan
                    if isinstance(v, str):
                        status[b] = v
                    elif isinstance(v, float):
                        status.setdefault(b, "ok")
        for b, text in status.items():
            rec[f"{b}.status"] = text
        records.append(rec)
    return pd.DataFrame(records)


def to_csv(report: Report) -> str:
    buf = io.StringIO()
    to_frame(report).to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------
# HTML: one self-contained file

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:72em;
color:#222;padding:0 1em}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-variant-numeric:tabular-nums}
th,td{padding:0.2em 0.6em;border-bottom:1px solid #ddd}
thead th{border-bottom:2px solid #444}
td.num{text-align:right}
th.group{text-align:center;border-bottom:1px solid #888}
caption{caption-side:top;text-align:left;font-weight:600;padding:0.3em 0}
.note,.caption{color:#555;font-size:0.9em}
figure{display:inline-block;margin:0.5em 1em 1em 0;vertical-align:top}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:0.85em;color:#555;max-width:40em}
"""


def html_table(t: Table) -> str:
    e = html.escape
    width = len(t.metrics)
    head1 = "".join(f'<th class="group" colspan="{width}">{e(b)}</th>' for b in t.backends)
    head2 = "".join(f"<th>{e(m.header)} ({e(m.unit)})</th>" for _ in t.backends for m in t.metrics)
    body = []
    for row in t.rows:
        cells = "".join(f"<td>{e(x)}</td>" for x in row)
        for b in t.backends:
            for m in t.metrics:
                text = e(_cell_text(t.cell(row, b, m.key)))
                if t.is_best(row, b, m):
                    text = f"<b>{text}</b>"
                cells += f'<td class="num">{text}</td>'
        body.append(f"<tr>{cells}</tr>")
    note = f'<p class="note">{e(t.note)}</p>' if t.note else ""
    return (
        f"<table><caption>{e(t.title)}</caption><thead>"
        f'<tr><th rowspan="2">case</th><th rowspan="2">dtype</th><th rowspan="2">mode</th>'
        f"{head1}</tr><tr>{head2}</tr></thead><tbody>{''.join(body)}</tbody></table>{note}"
    )


def to_html(report: Report, figures: Sequence[tuple[str, bytes, str]] = ()) -> str:
    """figures: (title, PNG bytes, caption) embedded as base64 data URIs."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(report.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(report.title)}</h1>",
        f'<p class="caption">{e(report.caption)}</p>',
    ]
    for t in report.tables:
        parts.append(html_table(t))
    parts.append('<p class="note">Bold: the best value of each row.</p>')
    if report.warnings:
        parts.append("<h2>Health warnings</h2><ul>")
        parts += [f"<li>{e(w)}</li>" for w in report.warnings]
        parts.append("</ul>")
    if figures:
        parts.append("<h2>Figures</h2>")
        for title, png, cap in figures:
            data = base64.b64encode(png).decode("ascii")
            parts.append(
                f'<figure><img alt="{e(title)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{e(cap)}</figcaption></figure>"
            )
    parts.append("<h2>Run</h2><ul>")
    parts += [f"<li>{e(line)}</li>" for line in report.details]
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"


def report_figures(rs: ResultSet, baseline: str | None) -> list[tuple[str, bytes, str]]:
    """The default figures of a run as PNG bytes, for the HTML report."""
    from invbench.render.plots.make import PlotRequest, build_figures

    request = PlotRequest(results=[rs.directory], baseline=baseline)
    figures, _ = build_figures(request, [rs])
    out = []
    for fig in figures:
        buf = io.BytesIO()
        fig.save_png(buf)
        out.append((fig.kind, buf.getvalue(), " ".join([fig.caption, *fig.details[:1]])))
    return out


def render(
    report: Report, fmt: ReportFormat, rs: ResultSet, baseline: str | None, figures: bool
) -> str:
    """The report as text; baseline None: the default one (figures skip it when absent)."""
    if fmt is ReportFormat.MARKDOWN:
        return to_markdown(report)
    if fmt is ReportFormat.LATEX:
        return to_latex(report)
    if fmt is ReportFormat.CSV:
        return to_csv(report)
    return to_html(report, report_figures(rs, baseline) if figures else ())


def write_report(text: str, output: Path | None) -> None:
    if output is None:
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
