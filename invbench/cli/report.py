"""`invbench report`: tables for papers from one machine's result directories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from invbench.cli.console import fail, out
from invbench.core.choices import ReportFormat


def report_command(
    results: Annotated[
        list[Path],
        typer.Argument(
            help="Result directories of one machine (e.g. a fwd and a fwd+bwd run), "
            "reported as one.",
            show_default=False,
        ),
    ],
    fmt: Annotated[
        ReportFormat, typer.Option("--format", help="markdown, latex, html or csv.")
    ] = ReportFormat.MARKDOWN,
    output: Annotated[
        Path | None, typer.Option(help="Write to this file (default: standard output).")
    ] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Backend the speed-ups are relative to (default: unfold).")
    ] = None,
    figures: Annotated[bool, typer.Option(help="Embed the figures in the HTML report.")] = True,
) -> None:
    """Tables of latency, speed-up, throughput and peak memory, best value per row in bold."""
    from invbench.render.plots.data import PlotError
    from invbench.render.plots.make import load_sets
    from invbench.render.report import build_report, render, write_report
    from invbench.storage.results import ResultsError, combine_results

    try:
        try:
            rs = combine_results(load_sets(results))
        except ResultsError as exc:
            raise PlotError(str(exc)) from None
        report = build_report(rs, baseline)
        text = render(report, fmt, rs, baseline, figures)
    except PlotError as exc:
        raise fail(str(exc)) from None
    if output is None:
        print(text, end="")
    else:
        write_report(text, output)
        out.print(f"{fmt.value} report written to {output}", highlight=False)
