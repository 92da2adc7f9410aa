"""Figures for papers: `invbench plot`. matplotlib is imported only when a figure is made."""

from invbench.core.choices import FigureKind, Format, Width
from invbench.render.plots.data import PlotError
from invbench.render.plots.make import PlotRequest, make_plots

__all__ = ["FigureKind", "Format", "PlotError", "PlotRequest", "Width", "make_plots"]
