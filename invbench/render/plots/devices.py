"""Results of several devices: a set split by device, and the speed-up faceted by device.

Rows of different devices never share a figure panel or a table row: by_device splits
a set whose rows name several device models (device_name) into one set per device,
with the raw samples that belong to each (combine_results tags them), and
speedup_by_device_figure draws one speed-up panel per device (and dtype, mode) on a
shared axis, so the same backend can be read across GPUs.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from invbench.core.choices import Width
from invbench.render.plots import data as D
from invbench.render.plots.caption import caption_details, caption_line
from invbench.render.plots.figures import FigureResult, styled
from invbench.render.plots.layout import (
    finite,
    grouped_bars,
    in_panel,
    legend,
    new_figure,
    panels,
    set_log_axis,
    status_marks,
)
from invbench.render.plots.style import order_backends
from invbench.storage.results import ResultSet, device_names


def by_device(rs: ResultSet) -> list[tuple[str, ResultSet]]:
    """(device model, its rows and samples) for each device of rs; one entry if only one."""
    names = device_names(rs.rows)
    if len(names) <= 1:
        return [(names[0] if names else "", rs)]
    out = []
    for name in names:
        rows = rs.rows[rs.rows["device_name"] == name].reset_index(drop=True)
        samples = rs.samples
        if "device_name" in samples.columns:
            samples = samples[samples["device_name"] == name].reset_index(drop=True)
        else:  # samples not tagged by device: whose they are is unknown, keep none
            samples = samples.iloc[0:0]
        out.append((name, replace(rs, rows=rows, samples=samples)))
    return out


@styled
def speedup_by_device_figure(
    rs: ResultSet, width: Width, baseline: str, caption: bool = True
) -> FigureResult:
    """Speed-up over baseline, one panel per device x (dtype, mode), on one y axis."""
    parts = []
    for name, sub in by_device(rs):
        try:
            table = D.speedup_table(sub, baseline)
        except D.PlotError:
            continue  # the baseline did not run on this device: no panel
        if not table.empty:
            parts.append((name, sub, table.assign(device=name)))
    if len(parts) < 2:
        raise D.PlotError(
            f"speed-up by device needs {baseline!r} and another backend ok on two devices"
        )
    every = pd.concat([t for _, _, t in parts], ignore_index=True)
    rows = D.all_rows(rs)
    pairs = panels(every)
    line = caption_line(rs, rows)
    fig, axes, _ = new_figure(width, len(parts) * len(pairs), line if caption else None)
    vals = finite(np.concatenate([every["speedup"], every["ci_low"], every["ci_high"], [1.0]]))
    backends = order_backends(set(every["backend"]))
    ax_iter = iter(axes)
    for name, sub, table in parts:
        sub_rows = D.all_rows(sub)
        for dtype, mode in pairs:
            ax = next(ax_iter)
            cell = in_panel(table, dtype, mode)
            panel_rows = in_panel(sub_rows, dtype, mode)
            labels = D.label_order(panel_rows)
            present = [b for b in backends if (cell["backend"] == b).any()]
            offsets = grouped_bars(
                fig, ax, cell, "speedup", labels, present, err=("ci_low", "ci_high"), bottom=1.0
            )
            status_marks(ax, panel_rows, labels, present, offsets)
            set_log_axis(ax, float(vals.min()), float(vals.max()), suffix="×", ratio=True)
            ax.axhline(1.0, color="#000000", linewidth=0.8, zorder=3)
            ax.set_ylabel(f"speed-up over {baseline}\n(×, log)")
            suffix = D.panel_title(dtype, mode, pairs)
            ax.set_title(name + (f" · {suffix}" if suffix else ""))
            ax.set_xlabel("layer (case)")
    legend(fig, backends, bars=True, width=width)
    details = [
        f"Bars: median latency of {baseline} divided by each backend's median on the same "
        "device; one panel per device, all on one axis. Whiskers: bootstrap 95% confidence "
        "interval of that ratio from the raw samples.",
        *caption_details(rs, rows),
    ]
    return FigureResult("speedup", "speedup-by-device", fig, every, line, details)
