"""Layout helpers shared by the figure kinds: print-sized figures with a caption line,
the backend legend, category tick labels that never overlap, readable log axes and
grouped bars. Built on matplotlib's object API; import lazily."""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

from invbench.core.choices import Width
from invbench.core.spec import Status
from invbench.render.plots import data as D
from invbench.render.plots.style import (
    EDGE_COLOR,
    PANEL_HEIGHT_IN,
    SMALL_PT,
    backend_style,
    rc_params,
)

CAPTION_LINE_IN = 0.15  # height of one caption line at SMALL_PT, inches
STATUS_SHORT = {
    Status.SKIPPED.value: "skipped",
    Status.INCORRECT.value: "wrong",
    Status.ERROR.value: "error",
    Status.OOM.value: "OOM",
}


def print_rc() -> Any:
    return rc_params()


def new_figure(
    width: Width,
    n_panels: int,
    caption: str | None,
    panel_heights: Sequence[float] | None = None,
) -> tuple[Figure, list[Axes], int]:
    """A figure of the final printed size with one axes per panel and room for a caption.

    panel_heights (inches) stacks the panels in one column with those heights; otherwise
    panels are of equal height, two per row in double-width figures.
    Returns the figure, its axes (row-major) and the caption's line count.
    """
    if panel_heights is not None:
        ncols, nrows = 1, n_panels
        height = float(sum(panel_heights))
    else:
        ncols = 2 if width is Width.DOUBLE and n_panels > 1 else 1
        nrows = math.ceil(n_panels / ncols)
        height = PANEL_HEIGHT_IN[width] * nrows
    lines: list[str] = []
    if caption:
        chars = int(width.inches * 72 / (0.58 * SMALL_PT))
        lines = wrap_caption(caption, chars)
    cap_h = CAPTION_LINE_IN * len(lines) + (0.04 if lines else 0.0)
    height += 0.35 + cap_h  # top legend + caption
    engine = ConstrainedLayoutEngine(rect=(0.0, cap_h / height, 1.0, 1.0 - cap_h / height))
    fig = Figure(figsize=(width.inches, height), layout=engine)
    FigureCanvasAgg(fig)
    grid = fig.subplots(
        nrows,
        ncols,
        squeeze=False,
        gridspec_kw={"height_ratios": list(panel_heights)} if panel_heights else None,
    )
    axes = [ax for row in grid for ax in row]
    for extra in axes[n_panels:]:
        extra.set_visible(False)
    if lines:
        fig.text(
            0.5,
            0.01,
            "\n".join(lines),
            ha="center",
            va="bottom",
            fontsize=SMALL_PT,
            color="#333333",
        )
    return fig, axes[:n_panels], len(lines)


def wrap_caption(caption: str, chars: int, sep: str = " · ") -> list[str]:
    """Break a caption between its ' · ' parts (inside a part only when it is too long)."""
    lines: list[str] = []
    for part in caption.split(sep):
        if lines and len(lines[-1]) + len(sep) + len(part) <= chars:
            lines[-1] += sep + part
        else:
            lines.extend(textwrap.wrap(part, chars) or [part])
    return lines


def legend(
    fig: Figure,
    backends: Sequence[str],
    bars: bool,
    width: Width,
    names: Mapping[str, str] | None = None,
) -> None:
    """One entry per backend in its colour and marker, labelled with names[backend]."""
    handles: list[Line2D | Patch] = []
    for name in backends:
        st = backend_style(name)
        if bars:
            handles.append(Patch(facecolor=st.color, edgecolor=EDGE_COLOR, linewidth=0.4))
        else:
            handles.append(
                Line2D(
                    [],
                    [],
                    color=st.color,
                    marker=st.marker,
                    markeredgecolor=EDGE_COLOR,
                    markeredgewidth=0.4,
                    linestyle="none",
                )
            )
    max_cols = 4 if width is Width.SINGLE else 8
    fig.legend(
        handles,
        [(names or {}).get(b, b) for b in backends],
        loc="outside upper center",
        ncols=min(len(backends), max_cols),
        handlelength=1.2,
        columnspacing=1.0,
        fontsize=SMALL_PT,
    )


def draw_renderer(fig: Figure) -> object:
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    canvas.draw()
    return canvas.get_renderer()


def overlapping(fig: Figure, ax: Axes, axis: str = "x") -> bool:
    """Whether any two visible tick labels of the axis touch.

    Horizontal labels: their boxes intersect. Rotated labels are parallel slanted strips:
    they clear each other when the gap between ticks times sin(angle) exceeds the text
    height (their axis-aligned boxes may still intersect).
    """
    renderer = draw_renderer(fig)
    labels = [
        lab
        for lab in (ax.get_xticklabels() if axis == "x" else ax.get_yticklabels())
        if lab.get_visible() and lab.get_text()
    ]
    if len(labels) < 2:
        return False
    angle = labels[0].get_rotation() % 180
    if angle == 0:
        boxes = [lab.get_window_extent(renderer) for lab in labels]  # type: ignore[arg-type]
        return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    positions = sorted(ax.transData.transform((lab.get_position()[0], 0))[0] for lab in labels)
    gap = min(b - a for a, b in itertools.pairwise(positions))
    px_per_pt = fig.dpi / 72.0
    lines = max(lab.get_text().count("\n") + 1 for lab in labels)
    height = float(labels[0].get_fontsize()) * 1.2 * lines * px_per_pt
    return gap * math.sin(math.radians(angle)) < height * 1.05


def wrap_label(text: str, max_chars: int = 12) -> str:
    """Break a long case name once, after the separator nearest its middle."""
    if len(text) <= max_chars or "\n" in text:
        return text
    cuts = [i + 1 for i, ch in enumerate(text) if ch in "-_/ "]
    if not cuts:
        return text
    cut = min(cuts, key=lambda i: abs(i - len(text) / 2))
    head, tail = text[:cut], text[cut:]
    if head.endswith(" "):
        head = head[:-1]
    elif tail.startswith(" "):
        tail = tail[1:]
    return f"{head}\n{tail}" if head and tail else text


def fit_category_labels(fig: Figure, ax: Axes, labels: Sequence[str]) -> None:
    """Set category tick labels so that none overlap: as is, wrapped, rotated 35, then 90."""
    ax.set_xticks(range(len(labels)), list(labels))
    if not overlapping(fig, ax):
        return
    ax.set_xticks(range(len(labels)), [wrap_label(t) for t in labels])
    if not overlapping(fig, ax):
        return
    ax.set_xticks(range(len(labels)), list(labels))
    for lab in ax.get_xticklabels():
        lab.set_rotation(35)
        lab.set_horizontalalignment("right")
        lab.set_rotation_mode("anchor")
    if not overlapping(fig, ax):
        return
    for lab in ax.get_xticklabels():
        lab.set_rotation(90)
        lab.set_horizontalalignment("center")
        lab.set_rotation_mode("default")


_MANTISSAS = ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0))


def _candidates(lo: float, hi: float, mantissas: Sequence[float]) -> list[float]:
    lo_e, hi_e = math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1
    return sorted(m * 10.0**e for e in range(lo_e, hi_e + 1) for m in mantissas)


def nice_ticks(lo: float, hi: float, ratio_axis: bool) -> tuple[list[float], float, float]:
    """Readable tick values for a log axis from lo to hi, and the limits to use: widened
    to the nearest readable values when fewer than two fall inside."""
    for mantissas in _MANTISSAS:
        inside = [t for t in _candidates(lo, hi, mantissas) if lo <= t <= hi]
        if ratio_axis and 1.0 not in inside and lo <= 1.0 <= hi:
            inside = sorted({*inside, 1.0})
        if len(inside) >= 3:
            if len(inside) > 8:
                step = math.ceil(len(inside) / 8)
                inside = inside[::step]
            return inside, lo, hi
    finest = _candidates(lo, hi, _MANTISSAS[-1])
    below = max(t for t in finest if t <= lo * (1 + 1e-9))
    above = min(t for t in finest if t >= hi * (1 - 1e-9))
    inside = [t for t in finest if lo <= t <= hi]
    return sorted({below, *inside, above}), below, above


def tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-")
    return f"{v:g}"


def set_log_axis(
    ax: Axes, lo: float, hi: float, axis: str = "y", suffix: str = "", ratio: bool = False
) -> None:
    """Log scale from lo to hi (padded), with plain-number tick labels."""
    lo, hi = lo / 1.25, hi * 1.25
    if hi / lo < 2.5:  # too narrow for a log axis to show anything: widen around the middle
        mid = math.sqrt(lo * hi)
        lo, hi = mid / 1.6, mid * 1.6
    ticks, lo, hi = nice_ticks(lo, hi, ratio)
    fmt = FuncFormatter(lambda v, _pos: f"{tick_label(v)}{suffix}")
    if axis == "y":
        ax.set_yscale("log")
        ax.set_ylim(lo, hi)
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_major_formatter(fmt)
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(fmt)
        ax.xaxis.set_minor_formatter(NullFormatter())


def finite(values: Any) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    return a[np.isfinite(a) & (a > 0)]


def panels(table: pd.DataFrame) -> list[tuple[str, str]]:
    return D.panel_order(table)


def in_panel(table: pd.DataFrame, dtype: str, mode: str) -> pd.DataFrame:
    return table[(table["dtype"] == dtype) & (table["mode"] == mode)]


def status_marks(
    ax: Axes,
    rows: pd.DataFrame,
    labels: Sequence[str],
    backends: Sequence[str],
    offsets: dict[str, float],
) -> int:
    """Write the status of rows that did not run (OOM, skipped...) where their bar would be."""
    index = {lab: i for i, lab in enumerate(labels)}
    n = 0
    for _, r in rows.iterrows():
        if r["status"] == Status.OK.value or r["backend"] not in offsets:
            continue
        if r["label"] not in index:
            continue
        x = index[r["label"]] + offsets[r["backend"]]
        ax.text(
            x,
            0.02,
            STATUS_SHORT.get(str(r["status"]), str(r["status"])),
            transform=ax.get_xaxis_transform(),
            rotation=90,
            ha="center",
            va="bottom",
            fontsize=SMALL_PT,
            color=backend_style(str(r["backend"])).color,
        )
        n += 1
    return n


def bar_offsets(
    backends: Sequence[str], group_width: float = 0.8
) -> tuple[dict[str, float], float]:
    w = group_width / max(len(backends), 1)
    return {b: (i - (len(backends) - 1) / 2) * w for i, b in enumerate(backends)}, w


def grouped_bars(
    fig: Figure,
    ax: Axes,
    table: pd.DataFrame,
    value: str,
    labels: Sequence[str],
    backends: Sequence[str],
    err: tuple[str, str] | None = None,
    bottom: float | None = None,
) -> dict[str, float]:
    """Bars of table[value] per label (x) and backend (offset); errors from two columns."""
    offsets, w = bar_offsets(backends)
    index = {lab: i for i, lab in enumerate(labels)}
    for b in backends:
        sub = table[table["backend"] == b]
        if sub.empty:
            continue
        st = backend_style(b)
        x = np.array([index[lab] + offsets[b] for lab in sub["label"]])
        v = sub[value].to_numpy(dtype=np.float64)
        yerr = None
        if err is not None:
            lo = sub[err[0]].to_numpy(dtype=np.float64)
            hi = sub[err[1]].to_numpy(dtype=np.float64)
            lo_e = np.where(np.isfinite(lo), np.maximum(v - lo, 0), 0)
            hi_e = np.where(np.isfinite(hi), np.maximum(hi - v, 0), 0)
            yerr = np.vstack([lo_e, hi_e])
        heights = v if bottom is None else v - bottom
        ax.bar(
            x,
            heights,
            width=w,
            bottom=bottom,
            color=st.color,
            edgecolor=EDGE_COLOR,
            linewidth=0.4,
            yerr=yerr,
            error_kw={"elinewidth": 0.6, "ecolor": "#222222", "capsize": 1.5},
            label=b,
            zorder=2,
        )
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.grid(axis="y", which="major", zorder=0)
    ax.xaxis.set_minor_locator(NullLocator())
    fit_category_labels(fig, ax, labels)
    return offsets
