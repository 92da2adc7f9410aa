"""`invbench plot`, and the figures `invbench run --plot` makes after a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from invbench.cli import console
from invbench.cli.console import err, fail
from invbench.core.choices import FigureKind, Format, Width
from invbench.core.spec import Dtype, Mode


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
    from invbench.render.plots.data import PlotError
    from invbench.render.plots.make import PlotRequest, make_plots

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
        raise fail(str(exc)) from None
    for note in outcome.notes:
        err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    figures = [p for p in outcome.files if p.suffix.lstrip(".") in {f.value for f in Format}]
    console.out.print(f"{len(figures)} figure files written to {outcome.out_dir}", highlight=False)


def plot_after_run(directory: Path) -> None:
    """`invbench run --plot`: the default figures of the run just finished, as PNG.

    A run whose rows cannot be plotted (e.g. every row skipped) says why and goes on.
    """
    from invbench.render.plots.data import PlotError
    from invbench.render.plots.make import PlotRequest, make_plots

    try:
        outcome = make_plots(PlotRequest(results=[directory]))
    except PlotError as exc:
        err.print(f"invbench: no figures: {exc}", markup=False, highlight=False)
        return
    figures = [p for p in outcome.files if p.suffix == ".png"]
    console.out.print(f"{len(figures)} figures written to {outcome.out_dir}", highlight=False)
