"""The report as one self-contained HTML file with the figures embedded; the format switch."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

from invbench.core.choices import ReportFormat
from invbench.render.report.tables import Report, Table, cell_text
from invbench.render.report.text import to_csv, to_latex, to_markdown
from invbench.storage.results import ResultSet

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
                text = e(cell_text(t.cell(row, b, m.key)))
                if t.is_best(row, b, m):
                    text = f"<b>{text}</b>"
                cells += f'<td class="num">{text}</td>'
        body.append(f"<tr>{cells}</tr>")
    note = f'<p class="note">{e(t.note)}</p>' if t.note else ""
    return (
        f"<table><caption>{e(t.title)}</caption><thead>"
        + "<tr>"
        + "".join(f'<th rowspan="2">{e(name)}</th>' for name in t.key_names)
        + f"{head1}</tr><tr>{head2}</tr></thead><tbody>{''.join(body)}</tbody></table>{note}"
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
