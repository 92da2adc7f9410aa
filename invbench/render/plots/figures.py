"""One function per figure kind: a result set (or two) -> a matplotlib Figure.

Figures are built with matplotlib's object API on an Agg canvas, never through
pyplot: nothing global changes in the caller's process and no GUI backend is touched.
Import this module lazily (matplotlib is slow to import and optional for the harness).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ParamSpec

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

from invbench.core.choices import Width
from invbench.core.formatting import human_bytes
from invbench.measure.ceiling_record import Ceilings, ceilings_for
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
    print_rc,
    set_log_axis,
    status_marks,
    tick_label,
)
from invbench.render.plots.style import EDGE_COLOR, SMALL_PT, backend_style, order_backends
from invbench.storage.results import ResultSet

P = ParamSpec("P")


# No creation dates in vector files: the same data gives byte-identical files, so
# figures kept under version control change only when their content does.
_FILE_METADATA: dict[str, dict[str, str | None]] = {
    "pdf": {"Creator": "invbench", "CreationDate": None},
    "svg": {"Creator": "invbench", "Date": None},
}


_SVG_ID = re.compile(r'id="([A-Za-z]+[0-9a-f]{8,})"')


def _sequential_svg_ids(svg: str) -> str:
    """Number the SVG's hashed ids (clip paths, markers) in order of appearance.

    matplotlib hashes a clip rectangle's coordinates into its id, and those can differ
    in the last bits between two layouts of the same figure; numbered ids make equal
    figures byte-identical.
    """
    ids = list(dict.fromkeys(_SVG_ID.findall(svg)))
    if not ids:
        return svg
    names = {old: f"{old[0]}{i}" for i, old in enumerate(ids)}
    pattern = re.compile(
        r'(?<=id=")('
        + "|".join(map(re.escape, ids))
        + r')(?=")|(?<=#)('
        + "|".join(map(re.escape, ids))
        + r')(?=[)"])'
    )
    return pattern.sub(lambda m: names[m.group(0)], svg)


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
        with matplotlib.rc_context(print_rc()):
            for fmt in formats:
                path = out_dir / f"{self.stem}.{fmt}"
                self.figure.savefig(path, format=fmt, metadata=_FILE_METADATA.get(fmt))
                if fmt == "svg":
                    path.write_text(_sequential_svg_ids(path.read_text()))
                paths.append(path)
        text = out_dir / f"{self.stem}.txt"
        text.write_text("\n".join([self.caption, *self.details]) + "\n")
        table = out_dir / f"{self.stem}.csv"
        self.table.to_csv(table, index=False)
        return [*paths, text, table]

    def save_png(self, target: BinaryIO, dpi: int = 150) -> None:
        """PNG bytes into an open binary file (for embedding)."""
        with matplotlib.rc_context(print_rc()):
            self.figure.savefig(target, format="png", dpi=dpi)


def styled(make: Callable[P, FigureResult]) -> Callable[P, FigureResult]:
    """Build the whole figure under the print rc settings (sizes are read at creation)."""

    @functools.wraps(make)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> FigureResult:
        with matplotlib.rc_context(print_rc()):
            return make(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------------------------------
# The figure kinds


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
        resolved = sub[~sub["below_resolution"]]
        offsets = grouped_bars(fig, ax, resolved, "peak_mib", labels, present)
        _below_resolution_marks(ax, sub[sub["below_resolution"]], labels, offsets)
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
    """Rows under the method's resolution: '< 64 KiB' in the bar's place, not a zero."""
    index = {lab: i for i, lab in enumerate(labels)}
    for _, r in below.iterrows():
        ax.text(
            index[r["label"]] + offsets[r["backend"]],
            0.03,
            f"< {human_bytes(int(r['resolution_bytes']))}",
            transform=ax.get_xaxis_transform(),
            rotation=90,
            ha="center",
            va="bottom",
            fontsize=SMALL_PT,
            color=backend_style(str(r["backend"])).color,
        )


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
