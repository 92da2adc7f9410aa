"""One function per figure kind: a result set (or two) -> a FigureResult.

The kinds live by what they draw: bars (latency, speed-up, memory), the roofline, and
lines (sweep, A/B comparison). Import lazily: matplotlib is slow to import and
optional for the harness.
"""

from __future__ import annotations

from invbench.render.plots.bars import latency_figure, memory_figure, speedup_figure
from invbench.render.plots.result import FigureResult, styled
from invbench.render.plots.roofline import roofline_figure
from invbench.render.plots.sweep_compare import compare_figure, sweep_figure

__all__ = [
    "FigureResult",
    "compare_figure",
    "latency_figure",
    "memory_figure",
    "roofline_figure",
    "speedup_figure",
    "styled",
    "sweep_figure",
]
