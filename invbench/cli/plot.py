"""Typer commands `plot` and `report`, and the `run --plot` hook: thin wrappers over
invbench.render.plots and invbench.render.report. Registered in invbench.cli.app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from invbench.core.spec import Dtype, Mode
from invbench.render.plots.data import PlotError
from invbench.render.plots.make import FigureKind, Format, PlotRequest, load_sets, make_plots
from invbench.render.plots.style import Width
from invbench.render.report import ReportFormat, build_report, render, write_report
from invbench.storage.results import ResultsError, combine_results

_err = Console(stderr=True)
_out = Console()


def _fail(message: str) -> typer.Exit:
    _err.print(f"invbench: error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


def plot_command(
    results: Annotated[
        list[Path],
        typer.Argument(help="Result directories (compare: A then B).", show_default=False),
    ],
    kind: Annotated[
        list[FigureKind] | None,
        typer.Option(help="Figure kind (repeatable; default: all that apply)."),
    ] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Backend the speed-ups are relative to (default: unfold).")
    ] = None,
    fmt: Annotated[
        list[Format] | None,
        typer.Option("--format", help="File format (repeatable; default: png)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default: plots/ in the first results).")
    ] = None,
    width: Annotated[
        Width, typer.Option(help="single: 3.5 in (one column); double: 7 in (full width).")
    ] = Width.SINGLE,
    caption: Annotated[
        bool, typer.Option(help="Print the device/dtype/mode/commit line on the figure.")
    ] = True,
    dtype: Annotated[
        list[Dtype] | None, typer.Option(help="Only rows of this dtype (repeatable).")
    ] = None,
    mode: Annotated[
        list[Mode] | None, typer.Option(help="Only rows of this mode (repeatable).")
    ] = None,
) -> None:
    """Figures for papers: latency, speed-up, roofline, memory, sweeps, A/B comparison."""
    request = PlotRequest(
        results=results,
        kinds=kind or (FigureKind.ALL,),
        baseline=baseline,
        formats=fmt or (Format.PNG,),
        out=out,
        width=width,
        caption=caption,
        dtypes=[d.value for d in dtype or ()],
        modes=[m.value for m in mode or ()],
    )
    try:
        outcome = make_plots(request)
    except PlotError as exc:
        raise _fail(str(exc)) from None
    for note in outcome.notes:
        _err.print(f"note: {note}", markup=False, highlight=False)
    figures = [p for p in outcome.files if p.suffix.lstrip(".") in {f.value for f in Format}]
    _out.print(f"{len(figures)} figure files written to {outcome.out_dir}", highlight=False)


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
    try:
        try:
            rs = combine_results(load_sets(results))
        except ResultsError as exc:
            raise PlotError(str(exc)) from None
        report = build_report(rs, baseline)
        text = render(report, fmt, rs, baseline, figures)
    except PlotError as exc:
        raise _fail(str(exc)) from None
    if output is None:
        print(text, end="")
    else:
        write_report(text, output)
        _out.print(f"{fmt.value} report written to {output}", highlight=False)


def plot_after_run(directory: Path) -> None:
    """`invbench run --plot`: the default figures of the run just finished, as PNG.

    A run whose rows cannot be plotted (e.g. every row skipped) says why and goes on.
    """
    try:
        outcome = make_plots(PlotRequest(results=[directory]))
    except PlotError as exc:
        _err.print(f"invbench: no figures: {exc}", markup=False, highlight=False)
        return
    figures = [p for p in outcome.files if p.suffix == ".png"]
    _out.print(f"{len(figures)} figures written to {outcome.out_dir}", highlight=False)
