"""The report as Markdown, LaTeX (booktabs, siunitx S columns) and CSV (one wide table)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from invbench.core.formatting import md_escape
from invbench.render.report.tables import (
    Report,
    RowKey,
    Table,
    cell_text,
    fmt_number,
)

# ---------------------------------------------------------------------------------------
# Markdown


def markdown_table(t: Table) -> str:
    header = list(t.key_names)
    n = len(header)
    for b in t.backends:
        header.extend(f"{b} {m.header} ({m.unit})" for m in t.metrics)
    lines = [
        "| " + " | ".join(md_escape(h) for h in header) + " |",
        "|" + "|".join([":---"] * n + ["---:"] * (len(header) - n)) + "|",
    ]
    for row in t.rows:
        cells = [md_escape(x) for x in row]
        for b in t.backends:
            for m in t.metrics:
                text = md_escape(cell_text(t.cell(row, b, m.key)))
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
    spec = ["l"] * len(t.key_names)
    for b in t.backends:
        for m in t.metrics:
            nums = [
                v
                for row in t.rows
                if isinstance(v := t.cell(row, b, m.key), float) and math.isfinite(v)
            ]
            spec.append(f"S[table-format={_table_format(nums)}]")
    width = len(t.metrics)
    head1 = [""] * len(t.key_names)
    head2 = [f"{{{name}}}" for name in t.key_names]
    rules = []
    col = len(t.key_names) + 1
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
    names = report.tables[0].key_names if report.tables else ("case", "dtype", "mode")
    records = []
    for k in keys:
        rec: dict[str, Any] = dict(zip(names, k, strict=True))
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
