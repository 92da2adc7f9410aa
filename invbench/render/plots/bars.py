"""The bar figures: latency, speed-up over a baseline, and peak memory per case and backend."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from invbench.core.choices import Width
from invbench.core.formatting import human_bytes
from invbench.render.plots import data as D
from invbench.render.plots.caption import caption_details, caption_line
from invbench.render.plots.layout import (
    STATUS_SHORT,
    finite,
    grouped_bars,
    in_panel,
    legend,
    new_figure,
    panels,
    set_log_axis,
    status_marks,
)
from invbench.render.plots.result import FigureResult, styled
from invbench.render.plots.style import SMALL_PT, backend_style, order_backends
from invbench.storage.results import ResultSet


@styled
def latency_figure(rs: ResultSet, width: Width, caption: bool = True) -> FigureResult:
    table = D.latency_points(rs)
    rows = D.all_rows(rs)
    pairs = panels(table)
    line = caption_line(rs, rows)
    fig, axes, _ = new_figure(width, len(pairs), line if caption else None)
    backends = order_backends(set(table["backend"]))
    for ax, (dtype, mode) in zip(axes, pairs, strict=True):
        sub = in_panel(table, dtype, mode)
        labels = D.label_order(in_panel(rows, dtype, mode))
        present = [b for b in backends if (sub["backend"] == b).any()]
        offsets = grouped_bars(fig, ax, sub, "median_ms", labels, present, err=("p20_ms", "p80_ms"))
        vals = finite(np.concatenate([sub["p20_ms"], sub["median_ms"], sub["p80_ms"]]))
        if vals.max() / vals.min() > 20:
            set_log_axis(ax, float(vals.min()), float(vals.max()))
            ax.set_ylabel("latency (ms, log)")
        else:
            ax.set_ylim(0, float(vals.max()) * 1.12)
            ax.set_ylabel("latency (ms)")
        status_marks(ax, in_panel(rows, dtype, mode), labels, present, offsets)
        ax.set_title(D.panel_title(dtype, mode, pairs))
        ax.set_xlabel(D.category_axis_label(rows))
    legend(fig, backends, bars=True, width=width, names=D.series_names(rows))
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
    pairs = panels(table)
    line = caption_line(rs, rows)
    fig, axes, _ = new_figure(width, len(pairs), line if caption else None)
    backends = order_backends(set(table["backend"]))
    for ax, (dtype, mode) in zip(axes, pairs, strict=True):
        sub = in_panel(table, dtype, mode)
        panel_rows = in_panel(rows, dtype, mode)
        labels = D.label_order(panel_rows)
        present = [b for b in backends if (sub["backend"] == b).any()]
        offsets = grouped_bars(
            fig, ax, sub, "speedup", labels, present, err=("ci_low", "ci_high"), bottom=1.0
        )
        status_marks(ax, panel_rows, labels, present, offsets)
        _baseline_missing_marks(ax, panel_rows, labels, set(sub["label"]), baseline)
        vals = finite(np.concatenate([sub["speedup"], sub["ci_low"], sub["ci_high"], [1.0]]))
        set_log_axis(ax, float(vals.min()), float(vals.max()), suffix="×", ratio=True)
        ax.axhline(1.0, color="#000000", linewidth=0.8, zorder=3)
        ax.set_ylabel(f"speed-up over {D.series_names(rows).get(baseline, baseline)}\n(×, log)")
        ax.set_title(D.panel_title(dtype, mode, pairs))
        ax.set_xlabel(D.category_axis_label(rows))
    legend(fig, backends, bars=True, width=width, names=D.series_names(rows))
    details = [
        f"Bars: median latency of {baseline} divided by each backend's median (above 1: faster"
        f" than {baseline}); whiskers: bootstrap 95% confidence interval of that ratio from the"
        " raw samples (absent where the run kept no samples).",
        *caption_details(rs, rows),
    ]
    return FigureResult("speedup", "speedup", fig, table, line, details)


def _baseline_missing_marks(
    ax: Axes, rows: pd.DataFrame, labels: Sequence[str], shown: set[str], baseline: str
) -> None:
    """A case whose baseline did not run has no speed-ups: say why in its place."""
    for i, label in enumerate(labels):
        if label in shown:
            continue
        base = rows[(rows["label"] == label) & (rows["backend"] == baseline)]
        status = str(base["status"].iloc[0]) if not base.empty else "absent"
        ax.text(
            i,
            0.04,
            f"{baseline}: {STATUS_SHORT.get(status, status)}",
            transform=ax.get_xaxis_transform(),
            rotation=90,
            ha="center",
            va="bottom",
            fontsize=SMALL_PT,
            color=backend_style(baseline).color,
        )


@styled
def memory_figure(rs: ResultSet, width: Width, caption: bool = True) -> FigureResult:
    table = D.memory_table(rs)
    rows = D.all_rows(rs)
    pairs = panels(table)
    line = caption_line(rs, rows)
    fig, axes, _ = new_figure(width, len(pairs), line if caption else None)
    backends = order_backends(set(table["backend"]))
    for ax, (dtype, mode) in zip(axes, pairs, strict=True):
        sub = in_panel(table, dtype, mode)
        labels = D.label_order(in_panel(rows, dtype, mode))
        present = [b for b in backends if (sub["backend"] == b).any()]
        unplotted = sub["below_resolution"] | (sub["peak_mib"] <= 0)  # nothing on a log axis
        resolved = sub[~unplotted]
        offsets = grouped_bars(fig, ax, resolved, "peak_mib", labels, present)
        _below_resolution_marks(ax, sub[unplotted], labels, offsets)
        status_marks(ax, in_panel(rows, dtype, mode), labels, present, offsets)
        vals = finite(resolved["peak_mib"])
        if len(vals):
            set_log_axis(ax, float(vals.min()), float(vals.max()))
        else:
            ax.set_yscale("log")
            ax.set_ylim(0.01, 1)
        ax.set_ylabel("peak memory (MiB, log)")
        ax.set_title(D.panel_title(dtype, mode, pairs))
        ax.set_xlabel(D.category_axis_label(rows))
    legend(fig, backends, bars=True, width=width, names=D.series_names(rows))
    methods = ", ".join(sorted(set(table["mem_method"].astype(str)) - {""})) or "unrecorded"
    below = int(table["below_resolution"].sum())
    details = [
        f"Bars: peak memory of one call above what was allocated before it ({methods}).",
        *(
            [
                f"'<' marks {below} rows whose peak was below what the method resolves"
                f" ({D.resolution_text(table)}): their memory is unknown, not zero."
            ]
            if below
            else []
        ),
        *caption_details(rs, rows),
    ]
    return FigureResult("memory", "memory", fig, table, line, details)


def _below_resolution_marks(
    ax: Axes, below: pd.DataFrame, labels: Sequence[str], offsets: dict[str, float]
) -> None:
    """Rows under the method's resolution: '< 64 KiB' in the bar's place, not a zero; a
    true zero (a method that counts every byte) is marked '0'."""
    index = {lab: i for i, lab in enumerate(labels)}
    for _, r in below.iterrows():
        ax.text(
            index[r["label"]] + offsets[r["backend"]],
            0.03,
            f"< {human_bytes(int(r['resolution_bytes']))}" if r["below_resolution"] else "0",
            transform=ax.get_xaxis_transform(),
            rotation=90,
            ha="center",
            va="bottom",
            fontsize=SMALL_PT,
            color=backend_style(str(r["backend"])).color,
        )
