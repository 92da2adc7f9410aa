"""One function per figure kind: a result set (or two) -> a matplotlib Figure.

Figures are built with matplotlib's object API on an Agg canvas, never through
pyplot: nothing global changes in the caller's process and no GUI backend is touched.
Import this module lazily (matplotlib is slow to import and optional for the harness).
"""

from __future__ import annotations

import functools
import itertools
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ParamSpec

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

from invbench.plots import data as D
from invbench.plots.caption import caption_details, caption_line
from invbench.plots.ceilings import Ceilings, ceilings_for
from invbench.plots.style import (
    EDGE_COLOR,
    PANEL_HEIGHT_IN,
    SMALL_PT,
    Width,
    backend_style,
    order_backends,
    rc_params,
)
from invbench.results import ResultSet
from invbench.spec import Status

P = ParamSpec("P")


def _print_rc() -> Any:
    return rc_params()


CAPTION_LINE_IN = 0.15  # height of one caption line at SMALL_PT, inches
STATUS_SHORT = {
    Status.SKIPPED.value: "skipped",
    Status.INCORRECT.value: "wrong",
    Status.ERROR.value: "error",
    Status.OOM.value: "OOM",
}


@dataclass
class FigureResult:
    """A figure, the table it plots, and its caption."""

    kind: str
    stem: str  # file name without extension
    figure: Figure
    table: pd.DataFrame
    caption: str  # one line: device, dtype, mode, batch, commit
    details: list[str] = field(default_factory=list)  # more lines for the sidecar file

    def save(self, out_dir: Path, formats: Sequence[str]) -> list[Path]:
        """Write the figure in each format, plus STEM.txt (caption) and STEM.csv (data)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        with matplotlib.rc_context(_print_rc()):
            for fmt in formats:
                path = out_dir / f"{self.stem}.{fmt}"
                meta = {"Creator": "invbench"} if fmt in ("pdf", "svg") else None
                self.figure.savefig(path, format=fmt, metadata=meta)
                paths.append(path)
        text = out_dir / f"{self.stem}.txt"
        text.write_text("\n".join([self.caption, *self.details]) + "\n")
        table = out_dir / f"{self.stem}.csv"
        self.table.to_csv(table, index=False)
        return [*paths, text, table]

    def save_png(self, target: BinaryIO, dpi: int = 150) -> None:
        """PNG bytes into an open binary file (for embedding)."""
        with matplotlib.rc_context(_print_rc()):
            self.figure.savefig(target, format="png", dpi=dpi)


def styled(make: Callable[P, FigureResult]) -> Callable[P, FigureResult]:
    """Build the whole figure under the print rc settings (sizes are read at creation)."""

    @functools.wraps(make)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> FigureResult:
        with matplotlib.rc_context(_print_rc()):
            return make(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------------------------------
# Layout helpers


def _new_figure(
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


def _legend(fig: Figure, backends: Sequence[str], bars: bool, width: Width) -> None:
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
        list(backends),
        loc="outside upper center",
        ncols=min(len(backends), max_cols),
        handlelength=1.2,
        columnspacing=1.0,
        fontsize=SMALL_PT,
    )


def _renderer(fig: Figure) -> object:
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    canvas.draw()
    return canvas.get_renderer()


def _overlapping(fig: Figure, ax: Axes, axis: str = "x") -> bool:
    """Whether any two visible tick labels of the axis touch.

    Horizontal labels: their boxes intersect. Rotated labels are parallel slanted strips:
    they clear each other when the gap between ticks times sin(angle) exceeds the text
    height (their axis-aligned boxes may still intersect).
    """
    renderer = _renderer(fig)
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


def _wrap_label(text: str, max_chars: int = 12) -> str:
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
    if not _overlapping(fig, ax):
        return
    ax.set_xticks(range(len(labels)), [_wrap_label(t) for t in labels])
    if not _overlapping(fig, ax):
        return
    ax.set_xticks(range(len(labels)), list(labels))
    for lab in ax.get_xticklabels():
        lab.set_rotation(35)
        lab.set_horizontalalignment("right")
        lab.set_rotation_mode("anchor")
    if not _overlapping(fig, ax):
        return
    for lab in ax.get_xticklabels():
        lab.set_rotation(90)
        lab.set_horizontalalignment("center")
        lab.set_rotation_mode("default")


_MANTISSAS = ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0))


def _candidates(lo: float, hi: float, mantissas: Sequence[float]) -> list[float]:
    lo_e, hi_e = math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1
    return sorted(m * 10.0**e for e in range(lo_e, hi_e + 1) for m in mantissas)


def _nice_ticks(lo: float, hi: float, ratio_axis: bool) -> tuple[list[float], float, float]:
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


def _fmt_number(v: float) -> str:
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
    ticks, lo, hi = _nice_ticks(lo, hi, ratio)
    fmt = FuncFormatter(lambda v, _pos: f"{_fmt_number(v)}{suffix}")
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


def _finite(values: Any) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    return a[np.isfinite(a) & (a > 0)]


def _panels(table: pd.DataFrame) -> list[tuple[str, str]]:
    return D.panel_order(table)


def _in_panel(table: pd.DataFrame, dtype: str, mode: str) -> pd.DataFrame:
    return table[(table["dtype"] == dtype) & (table["mode"] == mode)]


def _status_marks(
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


def _bar_offsets(
    backends: Sequence[str], group_width: float = 0.8
) -> tuple[dict[str, float], float]:
    w = group_width / max(len(backends), 1)
    return {b: (i - (len(backends) - 1) / 2) * w for i, b in enumerate(backends)}, w


def _grouped_bars(
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
    offsets, w = _bar_offsets(backends)
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


# ---------------------------------------------------------------------------------------
# The figure kinds


@styled
def latency_figure(rs: ResultSet, width: Width, caption: bool = True) -> FigureResult:
    table = D.latency_table(rs)
    rows = D.all_rows(rs)
    pairs = _panels(table)
    line = caption_line(rs, rows)
    fig, axes, _ = _new_figure(width, len(pairs), line if caption else None)
    backends = order_backends(set(table["backend"]))
    for ax, (dtype, mode) in zip(axes, pairs, strict=True):
        sub = _in_panel(table, dtype, mode)
        labels = D.label_order(_in_panel(rows, dtype, mode))
        present = [b for b in backends if (sub["backend"] == b).any()]
        offsets = _grouped_bars(
            fig, ax, sub, "median_ms", labels, present, err=("p20_ms", "p80_ms")
        )
        vals = _finite(np.concatenate([sub["p20_ms"], sub["median_ms"], sub["p80_ms"]]))
        if vals.max() / vals.min() > 20:
            set_log_axis(ax, float(vals.min()), float(vals.max()))
            ax.set_ylabel("latency (ms, log)")
        else:
            ax.set_ylim(0, float(vals.max()) * 1.12)
            ax.set_ylabel("latency (ms)")
        _status_marks(ax, _in_panel(rows, dtype, mode), labels, present, offsets)
        ax.set_title(D.panel_title(dtype, mode, pairs))
        ax.set_xlabel("layer (case)")
    _legend(fig, backends, bars=True, width=width)
    details = [
        "Bars: median latency per call; whiskers: 20th to 80th percentile of the samples.",
        *caption_details(rs, rows),
    ]
    return FigureResult("latency", "latency", fig, table, line, details)


@styled
def speedup_figure(
    rs: ResultSet, width: Width, baseline: str, caption: bool = True
) -> FigureResult:
    table = D.speedup_table(rs, baseline)
    if table.empty:
        raise D.PlotError(
            f"{rs.directory}: no case has both {baseline!r} and another backend with ok rows"
        )
    rows = D.all_rows(rs)
    pairs = _panels(table)
    line = caption_line(rs, rows)
    fig, axes, _ = _new_figure(width, len(pairs), line if caption else None)
    backends = order_backends(set(table["backend"]))
    for ax, (dtype, mode) in zip(axes, pairs, strict=True):
        sub = _in_panel(table, dtype, mode)
        labels = D.label_order(sub)
        present = [b for b in backends if (sub["backend"] == b).any()]
        _grouped_bars(
            fig, ax, sub, "speedup", labels, present, err=("ci_low", "ci_high"), bottom=1.0
        )
        vals = _finite(np.concatenate([sub["speedup"], sub["ci_low"], sub["ci_high"], [1.0]]))
        set_log_axis(ax, float(vals.min()), float(vals.max()), suffix="×", ratio=True)
        ax.axhline(1.0, color="#000000", linewidth=0.8, zorder=3)
        ax.set_ylabel(f"speed-up over {baseline}\n(×, log)")
        ax.set_title(D.panel_title(dtype, mode, pairs))
        ax.set_xlabel("layer (case)")
    _legend(fig, backends, bars=True, width=width)
    details = [
        f"Bars: median latency of {baseline} divided by each backend's median (above 1: faster"
        f" than {baseline}); whiskers: bootstrap 95% confidence interval of that ratio from the"
        " raw samples (absent where the run kept no samples).",
        *caption_details(rs, rows),
    ]
    return FigureResult("speedup", "speedup", fig, table, line, details)


def _fmt_si(value: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


@styled
def roofline_figure(rs: ResultSet, width: Width, caption: bool = True) -> FigureResult:
    table = D.roofline_table(rs)
    rows = D.all_rows(rs)
    device = str(D.ok_rows(rs)["device"].iloc[0])
    ceilings = ceilings_for(rs.meta, device)
    table = _rescale_perf(table, ceilings)
    pairs = _panels(table)
    line = caption_line(rs, rows)
    fig, axes, _ = _new_figure(width, len(pairs), line if caption else None)
    backends = order_backends(set(table["backend"]))
    unit = D.PerfUnit(str(table["perf_unit"].iloc[0]), float(table["perf_scale"].iloc[0]))
    for ax, (dtype, mode) in zip(axes, pairs, strict=True):
        sub = _in_panel(table, dtype, mode)
        for b in backends:
            pts = sub[sub["backend"] == b]
            if pts.empty:
                continue
            st = backend_style(b)
            ax.scatter(
                pts["intensity"],
                pts["perf"],
                color=st.color,
                marker=st.marker,
                edgecolors=EDGE_COLOR,
                linewidths=0.4,
                s=22,
                label=b,
                zorder=3,
            )
        xs = _finite(sub["intensity"])
        ys = _finite(sub["perf"])
        x_lo, x_hi = float(xs.min()) / 2, float(xs.max()) * 2
        y_lo, y_hi = float(ys.min()), float(ys.max())
        _draw_roofs(ax, ceilings, dtype, unit, (x_lo, x_hi), (y_lo, y_hi))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: _fmt_number(v)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: _fmt_number(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(which="major", zorder=0)
        ax.set_xlabel("arithmetic intensity (FLOP/byte, log)")
        ax.set_ylabel(f"achieved {unit.name} (log)")
        ax.set_title(D.panel_title(dtype, mode, pairs))
    _legend(fig, backends, bars=False, width=width)
    details = [
        "Points: analytic FLOPs over median time, against analytic FLOPs over the fewest"
        " bytes the operation must move (inputs read once, outputs written once).",
        _ceiling_sentence(ceilings),
        *caption_details(rs, rows),
    ]
    return FigureResult("roofline", "roofline", fig, table, line, details)


def _rescale_perf(table: pd.DataFrame, ceilings: Ceilings | None) -> pd.DataFrame:
    """Pick the FLOP/s unit from the points and the compute roofs drawn with them."""
    peak = float(table["flops_per_s"].max())
    if ceilings is not None:
        for dtype in set(table["dtype"]):
            c = ceilings.compute_for(str(dtype))
            if c is not None:
                peak = max(peak, c.value)
    unit = D.perf_unit(peak)
    out = table.copy()
    out["perf"] = out["flops_per_s"] / unit.scale
    out["perf_unit"] = unit.name
    out["perf_scale"] = unit.scale
    return out


def _ceiling_sentence(ceilings: Ceilings | None) -> str:
    if ceilings is None:
        return "No ceilings drawn: the run measured none and no datasheet values apply."
    parts = []
    if ceilings.bandwidth is not None:
        parts.append(
            f"memory roof {_fmt_si(ceilings.bandwidth.value * 1e9, 'B/s')}"
            f" ({ceilings.bandwidth.marked})"
        )
    for dtype, c in sorted(ceilings.compute.items()):
        parts.append(f"{dtype} compute roof {_fmt_si(c.value, 'FLOP/s')} ({c.marked})")
    if ceilings.compute_any is not None:
        parts.append(
            f"compute roof {_fmt_si(ceilings.compute_any.value, 'FLOP/s')}"
            f" ({ceilings.compute_any.marked})"
        )
    return f"Ceilings of {ceilings.device}: " + "; ".join(parts) + "."


def _draw_roofs(
    ax: Axes,
    ceilings: Ceilings | None,
    dtype: str,
    unit: D.PerfUnit,
    xr: tuple[float, float],
    yr: tuple[float, float],
) -> None:
    """The memory roof up to the ridge point and the compute roof from it, each labelled
    in place (measured or datasheet); without ceilings, a note saying there are none."""
    x_lo, x_hi = xr
    y_lo, y_hi = yr
    if ceilings is None:
        ax.text(
            0.02,
            0.97,
            "no measured ceilings in this run",
            transform=ax.transAxes,
            ha="left",
            va="top",
            fontsize=SMALL_PT,
            color="#444444",
        )
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo / 2, y_hi * 2)
        return
    bw = ceilings.bandwidth
    comp = ceilings.compute_for(dtype)
    bw_per_unit = bw.value * 1e9 / unit.scale if bw is not None else None  # unit per FLOP/B
    peak = comp.value / unit.scale if comp is not None else None
    ridge_x = peak / bw_per_unit if peak is not None and bw_per_unit is not None else None
    if ridge_x is not None:
        x_hi = max(x_hi, ridge_x * 4)
        x_lo = min(x_lo, ridge_x / 4)
    roof = {"color": "#555555", "linewidth": 0.9, "zorder": 1}
    text = {"fontsize": SMALL_PT, "color": "#444444"}
    if bw is not None and bw_per_unit is not None:
        xs = np.geomspace(x_lo, ridge_x if ridge_x is not None else x_hi, 100)
        bw_y = xs * bw_per_unit
        label = f"{_fmt_si(bw.value * 1e9, 'B/s')} ({bw.source})"
        ax.plot(xs, bw_y, linestyle="--", label=label, **roof)  # type: ignore[arg-type]
        # along the line, near its left end; the angle is given in data space and
        # turned into the on-screen slope by the axes transform
        x0 = x_lo * 1.3
        ax.text(
            x0,
            x0 * bw_per_unit * 1.25,
            label,
            rotation=math.degrees(math.atan2(bw_per_unit, 1.0)),
            rotation_mode="anchor",
            transform_rotates_text=True,
            ha="left",
            va="bottom",
            **text,  # type: ignore[arg-type]
        )
        y_hi = max(y_hi, float(bw_y.max()))
        y_lo = min(y_lo, float(bw_y.min()))
    if peak is not None and comp is not None:
        start = ridge_x if ridge_x is not None else x_lo
        label = f"{_fmt_si(comp.value, 'FLOP/s')} ({comp.source}, {comp.what})"
        ax.plot([start, x_hi], [peak, peak], linestyle=":", label=label, **roof)  # type: ignore[arg-type]
        ax.text(x_hi / 1.2, peak * 1.2, label, ha="right", va="bottom", **text)  # type: ignore[arg-type]
        y_hi = max(y_hi, peak)
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(max(y_lo, y_hi / 1e6) / 2, y_hi * 5)


@styled
def memory_figure(rs: ResultSet, width: Width, caption: bool = True) -> FigureResult:
    table = D.memory_table(rs)
    rows = D.all_rows(rs)
    pairs = _panels(table)
    line = caption_line(rs, rows)
    fig, axes, _ = _new_figure(width, len(pairs), line if caption else None)
    backends = order_backends(set(table["backend"]))
    zero_rows = 0
    for ax, (dtype, mode) in zip(axes, pairs, strict=True):
        sub = _in_panel(table, dtype, mode)
        labels = D.label_order(_in_panel(rows, dtype, mode))
        present = [b for b in backends if (sub["backend"] == b).any()]
        positive = sub[sub["peak_mib"] > 0]
        offsets = _grouped_bars(fig, ax, positive, "peak_mib", labels, present)
        zeros = sub[sub["peak_mib"] <= 0]
        zero_rows += len(zeros)
        index = {lab: i for i, lab in enumerate(labels)}
        for _, r in zeros.iterrows():
            ax.text(
                index[r["label"]] + offsets[r["backend"]],
                0.02,
                "0",
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=SMALL_PT,
                color=backend_style(str(r["backend"])).color,
            )
        _status_marks(ax, _in_panel(rows, dtype, mode), labels, present, offsets)
        vals = _finite(positive["peak_mib"])
        if len(vals):
            set_log_axis(ax, float(vals.min()), float(vals.max()))
        else:
            ax.set_yscale("log")
            ax.set_ylim(0.01, 1)
        ax.set_ylabel("peak memory (MiB, log)")
        ax.set_title(D.panel_title(dtype, mode, pairs))
        ax.set_xlabel("layer (case)")
    _legend(fig, backends, bars=True, width=width)
    methods = ", ".join(sorted(set(table["mem_method"].astype(str)) - {""})) or "unrecorded"
    details = [
        f"Bars: peak memory of one call above what was allocated before it ({methods}).",
        *(
            [
                f"'0' marks {zero_rows} rows whose peak was below the method's resolution"
                " (nothing to draw on a log axis)."
            ]
            if zero_rows
            else []
        ),
        *caption_details(rs, rows),
    ]
    return FigureResult("memory", "memory", fig, table, line, details)


def _sweep_x_axis(ax: Axes, field_name: str, xs: Sequence[int]) -> None:
    values = sorted(set(int(v) for v in xs))
    powers_of_two = all(v > 0 and v & (v - 1) == 0 for v in values)
    if powers_of_two and values[-1] / values[0] >= 8:
        ax.set_xscale("log", base=2)
        label = f"{D.FIELD_AXIS_LABEL[field_name]} (log₂)"
    else:
        label = D.FIELD_AXIS_LABEL[field_name]
    ax.xaxis.set_major_locator(FixedLocator(values))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(label)


@styled
def sweep_figure(rs: ResultSet, width: Width, caption: bool = True) -> FigureResult:
    field_name, table = D.sweep_table(rs)
    rows = D.all_rows(rs)
    pairs = _panels(table)
    line = caption_line(rs, rows)
    fig, axes, _ = _new_figure(width, len(pairs), line if caption else None)
    backends = order_backends(set(table["backend"]))
    for ax, (dtype, mode) in zip(axes, pairs, strict=True):
        sub = _in_panel(table, dtype, mode)
        for b in backends:
            pts = sub[sub["backend"] == b]
            if pts.empty:
                continue
            st = backend_style(b)
            med = pts["median_ms"].to_numpy(dtype=np.float64)
            yerr = np.vstack(
                [
                    np.maximum(med - pts["p20_ms"].to_numpy(dtype=np.float64), 0),
                    np.maximum(pts["p80_ms"].to_numpy(dtype=np.float64) - med, 0),
                ]
            )
            ax.errorbar(
                pts["x"].to_numpy(dtype=np.float64),
                med,
                yerr=yerr,
                color=st.color,
                marker=st.marker,
                markeredgecolor=EDGE_COLOR,
                markeredgewidth=0.4,
                elinewidth=0.6,
                capsize=1.5,
                label=b,
                zorder=3,
            )
        _sweep_x_axis(ax, field_name, sub["x"].tolist())
        vals = _finite(np.concatenate([sub["p20_ms"], sub["median_ms"], sub["p80_ms"]]))
        if vals.max() / vals.min() > 10:
            set_log_axis(ax, float(vals.min()), float(vals.max()))
            ax.set_ylabel("latency (ms, log)")
        else:
            ax.set_ylim(0, float(vals.max()) * 1.12)
            ax.set_ylabel("latency (ms)")
        ax.grid(which="major", zorder=0)
        ax.set_title(D.panel_title(dtype, mode, pairs))
    _legend(fig, backends, bars=False, width=width)
    details = [
        f"Lines: median latency against {D.FIELD_AXIS_LABEL[field_name]}; whiskers: 20th to"
        " 80th percentile of the samples.",
        *caption_details(rs, rows),
    ]
    return FigureResult("sweep", "sweep", fig, table, line, details)


@styled
def compare_figure(a: ResultSet, b: ResultSet, width: Width, caption: bool = True) -> FigureResult:
    table = D.compare_table(a, b)
    pairs = _panels(table)
    backends = order_backends(set(table["backend"]))
    rank = {name: i for i, name in enumerate(backends)}
    label_rank = {lab: i for i, lab in enumerate(D.label_order(table))}
    pair_rank = {p: i for i, p in enumerate(pairs)}
    table = table.assign(
        _p=[pair_rank[(d, m)] for d, m in zip(table["dtype"], table["mode"], strict=True)],
        _l=[label_rank[x] for x in table["label"]],
        _b=[rank[x] for x in table["backend"]],
    )
    table = table.sort_values(["_p", "_l", "_b"], kind="stable").drop(columns=["_p", "_l", "_b"])
    table = table.reset_index(drop=True)
    table["row"] = [f"{r.label} · {r.backend}" for r in table.itertuples()]
    line = f"A: {_set_name(a)} · B: {_set_name(b)}"
    if caption:
        line = f"{line} · {caption_line(b, b.rows)}"
    counts = [len(_in_panel(table, d, m)) for d, m in pairs]
    heights = [0.45 + 0.16 * n + (0.2 if len(pairs) > 1 else 0.0) for n in counts]
    heights[-1] += 0.35  # the x label
    fig, axes, _ = _new_figure(width, len(pairs), line if caption else None, heights)
    vals = _finite(np.concatenate([table["ratio"], table["ci_low"], table["ci_high"], [1.0]]))
    spread = max(float(vals.max()), 1.0 / float(vals.min()), 1.25)
    y_all = np.zeros(len(table))
    for ax, (dtype, mode) in zip(axes, pairs, strict=True):
        sel_panel = ((table["dtype"] == dtype) & (table["mode"] == mode)).to_numpy()
        sub = table[sel_panel]
        y = np.arange(len(sub))[::-1].astype(np.float64)
        y_all[sel_panel] = y
        for name in backends:
            sel = (sub["backend"] == name).to_numpy()
            if not sel.any():
                continue
            st = backend_style(name)
            ratio = sub.loc[sel, "ratio"].to_numpy(dtype=np.float64)
            lo = sub.loc[sel, "ci_low"].to_numpy(dtype=np.float64)
            hi = sub.loc[sel, "ci_high"].to_numpy(dtype=np.float64)
            xerr = np.vstack(
                [
                    np.where(np.isfinite(lo), np.maximum(ratio - lo, 0), 0),
                    np.where(np.isfinite(hi), np.maximum(hi - ratio, 0), 0),
                ]
            )
            ax.errorbar(
                ratio,
                y[sel],
                xerr=xerr,
                color=st.color,
                marker=st.marker,
                markeredgecolor=EDGE_COLOR,
                markeredgewidth=0.4,
                linestyle="none",
                elinewidth=0.8,
                capsize=1.5,
                label=name,
                zorder=3,
            )
        set_log_axis(ax, 1.0 / spread, spread, axis="x", suffix="×", ratio=True)
        ax.axvline(1.0, color="#000000", linewidth=0.8, zorder=2)
        ax.set_yticks(y, sub["row"].tolist())
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_ylim(-0.7, len(sub) - 0.3)
        ax.grid(axis="x", which="major", zorder=0)
        ax.set_title(D.panel_title(dtype, mode, pairs))
    axes[-1].set_xlabel("time ratio B / A (×, log)\n← B faster      B slower →")
    table["y"] = y_all
    _legend(fig, backends, bars=False, width=width)
    details = [
        "Points: median latency in B over the same row's median in A; whiskers: bootstrap 95%"
        " confidence interval of that ratio from both runs' raw samples.",
        f"A: {_set_name(a)}: {caption_line(a, a.rows)}",
        f"B: {_set_name(b)}: {caption_line(b, b.rows)}",
    ]
    return FigureResult("compare", "compare", fig, table, line, details)


def _set_name(rs: ResultSet) -> str:
    return rs.directory.name or str(rs.directory)
