"""The line and point figures: latency along a one-field sweep, and the A/B time ratios."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from invbench.core.choices import Width
from invbench.render.plots import data as D
from invbench.render.plots.caption import caption_details, caption_line
from invbench.render.plots.layout import (
    finite,
    in_panel,
    legend,
    new_figure,
    panels,
    set_log_axis,
)
from invbench.render.plots.result import FigureResult, styled
from invbench.render.plots.style import EDGE_COLOR, backend_style, order_backends
from invbench.storage.results import ResultSet


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
    pairs = panels(table)
    line = caption_line(rs, rows)
    fig, axes, _ = new_figure(width, len(pairs), line if caption else None)
    backends = order_backends(set(table["backend"]))
    for ax, (dtype, mode) in zip(axes, pairs, strict=True):
        sub = in_panel(table, dtype, mode)
        for b in backends:
            pts = sub[sub["backend"] == b]
            if pts.empty:
                continue
            st = backend_style(b)
            med = pts["median_ms"].to_numpy(dtype=np.float64)
            yerr = np.nan_to_num(  # a row without percentiles gets no whisker
                np.vstack(
                    [
                        np.maximum(med - pts["p20_ms"].to_numpy(dtype=np.float64), 0),
                        np.maximum(pts["p80_ms"].to_numpy(dtype=np.float64) - med, 0),
                    ]
                )
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
        vals = finite(np.concatenate([sub["p20_ms"], sub["median_ms"], sub["p80_ms"]]))
        if vals.max() / vals.min() > 10:
            set_log_axis(ax, float(vals.min()), float(vals.max()))
            ax.set_ylabel("latency (ms, log)")
        else:
            ax.set_ylim(0, float(vals.max()) * 1.12)
            ax.set_ylabel("latency (ms)")
        ax.grid(which="major", zorder=0)
        ax.set_title(D.panel_title(dtype, mode, pairs))
    legend(fig, backends, bars=False, width=width, names=D.series_names(rows))
    details = [
        f"Lines: median latency against {D.FIELD_AXIS_LABEL[field_name]}; whiskers: 20th to"
        " 80th percentile of the samples.",
        *caption_details(rs, rows),
    ]
    return FigureResult("sweep", "sweep", fig, table, line, details)


@styled
def compare_figure(a: ResultSet, b: ResultSet, width: Width, caption: bool = True) -> FigureResult:
    table = D.compare_table(a, b)
    pairs = panels(table)
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
    counts = [len(in_panel(table, d, m)) for d, m in pairs]
    heights = [0.45 + 0.16 * n + (0.2 if len(pairs) > 1 else 0.0) for n in counts]
    heights[-1] += 0.35  # the x label
    fig, axes, _ = new_figure(width, len(pairs), line if caption else None, heights)
    vals = finite(np.concatenate([table["ratio"], table["ci_low"], table["ci_high"], [1.0]]))
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
    legend(fig, backends, bars=False, width=width, names=D.series_names(a.rows))
    details = [
        "Points: median latency in B over the same row's median in A; whiskers: bootstrap 95%"
        " confidence interval of that ratio from both runs' raw samples.",
        f"A: {_set_name(a)}: {caption_line(a, a.rows)}",
        f"B: {_set_name(b)}: {caption_line(b, b.rows)}",
    ]
    return FigureResult("compare", "compare", fig, table, line, details)


def _set_name(rs: ResultSet) -> str:
    return rs.directory.name or str(rs.directory)
