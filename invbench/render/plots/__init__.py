"""Figures for papers: `invbench plot`. matplotlib is imported only when a figure is made."""

from invbench.render.plots.data import PlotError
from invbench.render.plots.make import FigureKind, Format, PlotRequest, make_plots
from invbench.render.plots.style import Width

__all__ = ["FigureKind", "Format", "PlotError", "PlotRequest", "Width", "make_plots"]
