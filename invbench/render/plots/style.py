"""How every figure looks: sizes, fonts, and one fixed colour and marker per backend.

Colours are the Okabe-Ito palette (safe for the common colour-vision deficiencies).
Each known backend owns one colour and one marker in every figure; an unknown backend
gets a colour and marker chosen by a stable hash of its name (the same on every run
and machine), from a second colour-blind-safe palette (Paul Tol's muted scheme).

Nothing here imports matplotlib: the rc settings are plain dictionaries.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from invbench.core.choices import Width

# Font sizes in points at the final printed size (figures are never rescaled).
FONT_PT = 8.0
SMALL_PT = 7.0  # tick labels, legends, captions: the smallest text in any figure
MIN_FONT_PT = SMALL_PT

# Height of one panel, inches, for each width.
PANEL_HEIGHT_IN = {Width.SINGLE: 2.2, Width.DOUBLE: 2.4}


@dataclass(frozen=True)
class BackendStyle:
    color: str
    marker: str


OKABE_ITO = {
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "black": "#000000",
}

KNOWN_BACKENDS: dict[str, BackendStyle] = {
    "unfold": BackendStyle(OKABE_ITO["vermillion"], "o"),
    "compile": BackendStyle(OKABE_ITO["orange"], "s"),
    "conv3x3": BackendStyle(OKABE_ITO["black"], "^"),
    "dwconv": BackendStyle(OKABE_ITO["sky_blue"], "v"),
    "triton": BackendStyle(OKABE_ITO["bluish_green"], "D"),
    "triton_fused": BackendStyle(OKABE_ITO["blue"], "P"),
    "cuda_ext": BackendStyle(OKABE_ITO["reddish_purple"], "X"),
    "cuda_naive": BackendStyle(OKABE_ITO["yellow"], "h"),
}

# Order in which backends appear in legends, bars and tables (unknown ones follow, sorted).
BACKEND_ORDER = tuple(KNOWN_BACKENDS)

_FALLBACK_COLORS = (
    "#332288",
    "#88CCEE",
    "#44AA99",
    "#117733",
    "#999933",
    "#DDCC77",
    "#CC6677",
    "#882255",
    "#AA4499",
)
_FALLBACK_MARKERS = ("<", ">", "p", "*", "d", "8", "H")

EDGE_COLOR = "#333333"  # thin outline so light colours (yellow) stay visible on white


def backend_style(name: str) -> BackendStyle:
    """The colour and marker of a backend: fixed for known ones, a stable hash otherwise."""
    known = KNOWN_BACKENDS.get(name)
    if known is not None:
        return known
    h = zlib.crc32(name.encode("utf-8"))
    return BackendStyle(
        _FALLBACK_COLORS[h % len(_FALLBACK_COLORS)],
        _FALLBACK_MARKERS[(h // len(_FALLBACK_COLORS)) % len(_FALLBACK_MARKERS)],
    )


def order_backends(names: list[str] | set[str] | tuple[str, ...]) -> list[str]:
    """Known backends in their fixed order, then the others alphabetically."""
    present = set(names)
    known = [b for b in BACKEND_ORDER if b in present]
    return known + sorted(present - set(known))


def rc_params() -> dict[str, Any]:
    """matplotlib rc settings for print: sizes in points, text kept as text in PDF and SVG."""
    return {
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
        "font.size": FONT_PT,
        "axes.titlesize": FONT_PT,
        "axes.labelsize": FONT_PT,
        "xtick.labelsize": SMALL_PT,
        "ytick.labelsize": SMALL_PT,
        "legend.fontsize": SMALL_PT,
        "legend.title_fontsize": SMALL_PT,
        "figure.titlesize": FONT_PT,
        "axes.linewidth": 0.6,
        "grid.linewidth": 0.4,
        "grid.alpha": 0.5,
        "lines.linewidth": 1.2,
        "lines.markersize": 4.5,
        "errorbar.capsize": 1.5,
        "xtick.major.width": 0.6,
        "ytick.major.width": 0.6,
        "xtick.minor.width": 0.4,
        "ytick.minor.width": 0.4,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": False,
        "savefig.dpi": 300,
        "figure.dpi": 100,
        "pdf.fonttype": 42,  # TrueType: text stays selectable and editable
        "ps.fonttype": 42,
        "svg.fonttype": "none",  # <text> elements, not paths
        "svg.hashsalt": "invbench",  # stable ids: the same data gives the same SVG
        "path.simplify": False,
    }
