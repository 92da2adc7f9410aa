"""`invbench report`: a run's numbers as tables for papers and for sharing.

Four tables, one row per case x dtype x mode and one column group per backend:
latency (median and spread), speed-up over a baseline backend, throughput (GB/s and,
when the run measured its bandwidth, % of the memory floor), and peak memory. The
best value of each row is bold. Rendered as Markdown, LaTeX (booktabs, siunitx S
columns), CSV (one wide table) or one self-contained HTML file with the figures
embedded.
"""

from invbench.render.report.html import render, report_figures, to_html, write_report
from invbench.render.report.tables import DEFAULT_BASELINE, Report, Table, build_report, fmt_number
from invbench.render.report.text import tex_escape, to_csv, to_frame, to_latex, to_markdown

__all__ = [
    "DEFAULT_BASELINE",
    "Report",
    "Table",
    "build_report",
    "fmt_number",
    "render",
    "report_figures",
    "tex_escape",
    "to_csv",
    "to_frame",
    "to_html",
    "to_latex",
    "to_markdown",
    "write_report",
]
