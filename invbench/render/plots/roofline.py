"""The roofline figure: achieved FLOP/s against arithmetic intensity under the run's ceilings."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter

from invbench.core.choices import Width
from invbench.measure.ceiling_record import Ceilings, ceilings_for
from invbench.render.plots import data as D
from invbench.render.plots.caption import caption_details, caption_line
from invbench.render.plots.layout import (
    finite,
    in_panel,
    legend,
    new_figure,
    panels,
    tick_label,
)
from invbench.render.plots.result import FigureResult, styled
from invbench.render.plots.style import EDGE_COLOR, SMALL_PT, backend_style, order_backends
from invbench.storage.results import ResultSet


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
    pairs = panels(table)
    line = caption_line(rs, rows)
    fig, axes, _ = new_figure(width, len(pairs), line if caption else None)
    backends = order_backends(set(table["backend"]))
    unit = D.PerfUnit(str(table["perf_unit"].iloc[0]), float(table["perf_scale"].iloc[0]))
    for ax, (dtype, mode) in zip(axes, pairs, strict=True):
        sub = in_panel(table, dtype, mode)
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
        xs = finite(sub["intensity"])
        ys = finite(sub["perf"])
        x_lo, x_hi = float(xs.min()) / 2, float(xs.max()) * 2
        y_lo, y_hi = float(ys.min()), float(ys.max())
        _draw_roofs(ax, ceilings, dtype, unit, (x_lo, x_hi), (y_lo, y_hi))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: tick_label(v)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: tick_label(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(which="major", zorder=0)
        ax.set_xlabel("arithmetic intensity (FLOP/byte, log)")
        ax.set_ylabel(f"achieved {unit.name} (log)")
        ax.set_title(D.panel_title(dtype, mode, pairs))
    legend(fig, backends, bars=False, width=width, names=D.series_names(rows))
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
        # a handle-less legend: placed by matplotlib where it covers no point
        ax.legend(
            handles=[Line2D([], [], linestyle="none")],
            labels=["no measured ceilings in this run"],
            loc="best",
            handlelength=0,
            handletextpad=0,
            fontsize=SMALL_PT,
            labelcolor="#444444",
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
