"""Closed vocabularies of the command line's options that live above the core.

They are defined here, without torch, pandas or matplotlib, so that the command line
can build its options (and answer --help) without importing the layers that use them;
those layers import them from here.
"""

from __future__ import annotations

from enum import StrEnum


class CacheMode(StrEnum):
    COLD = "cold"  # L2 flushed before every sample, outside the timed region
    HOT = "hot"  # back to back: the caches hold whatever the last call left
    GRAPH = "graph"  # several calls captured in a CUDA graph, replayed back to back (hot)


class OutputFormat(StrEnum):
    """How `compare` and `ab` print a comparison."""

    TABLE = "table"
    MARKDOWN = "markdown"
    JSON = "json"


class Interleave(StrEnum):
    """How `ab` alternates the two revisions' runs."""

    LOCKSTEP = "lockstep"  # a base and a head process at once, their rounds alternated
    CASE = "case"  # one run per [[cases]] entry: base and head of a case seconds apart
    SUITE = "suite"  # one run per whole suite: fewer processes, coarser alternation


class FigureKind(StrEnum):
    LATENCY = "latency"
    SPEEDUP = "speedup"
    ROOFLINE = "roofline"
    MEMORY = "memory"
    SWEEP = "sweep"
    COMPARE = "compare"
    ALL = "all"


class Format(StrEnum):
    """File format of a figure."""

    PNG = "png"
    PDF = "pdf"
    SVG = "svg"


class Width(StrEnum):
    """Final printed width of a figure."""

    SINGLE = "single"  # one column of a two-column paper
    DOUBLE = "double"  # the full text width

    @property
    def inches(self) -> float:
        return {"single": 3.5, "double": 7.0}[self.value]


class ReportFormat(StrEnum):
    MARKDOWN = "markdown"
    LATEX = "latex"
    HTML = "html"
    CSV = "csv"
