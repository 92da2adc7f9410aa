"""Result sets -> the tidy tables each figure and report table is drawn from.

Pure pandas and numpy: no matplotlib. Every figure plots exactly one of these tables,
so a test can check the plotted data against the table, and the report can print
the same numbers the figures show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from invbench.core.formatting import human_bytes
from invbench.core.spec import Dtype, Mode, Status
from invbench.core.stats import bootstrap_ratio_ci
from invbench.measure.memory import RESOLUTION_BYTES, below_resolution
from invbench.render.plots.style import order_backends
from invbench.storage.merge import RUN_COLUMN
from invbench.storage.results import KEY_COLUMNS, ResultSet, device_names

# Fields a suite can vary; padding and the output size follow from them.
SHAPE_FIELDS = (
    "batch",
    "channels",
    "height",
    "width",
    "kernel_size",
    "stride",
    "dilation",
    "groups",
)
SWEEP_FIELDS = ("kernel_size", "batch", "channels", "height", "width", "stride", "dilation")
FIELD_SYMBOL = {
    "batch": "B",
    "channels": "C",
    "height": "H",
    "width": "W",
    "kernel_size": "K",
    "stride": "s",
    "dilation": "d",
    "groups": "G",
}
FIELD_AXIS_LABEL = {
    "batch": "batch size B",
    "channels": "channels C",
    "height": "input height H (px)",
    "width": "input width W (px)",
    "kernel_size": "kernel size K",
    "stride": "stride s",
    "dilation": "dilation d",
}
PANEL_KEYS = ("dtype", "mode")
MIB = 1024.0**2


class PlotError(ValueError):
    """Input that cannot be plotted or tabulated; the CLI prints it on one line, exit 2."""


def _order_index(values: Sequence[str], order: Sequence[str]) -> dict[str, int]:
    known = {v: i for i, v in enumerate(order)}
    return {v: known.get(v, len(order) + i) for i, v in enumerate(sorted(set(values)))}


def panel_order(rows: pd.DataFrame) -> list[tuple[str, str]]:
    """(dtype, mode) pairs present, in the Dtype and Mode enum orders."""
    pairs = sorted({(str(d), str(m)) for d, m in zip(rows["dtype"], rows["mode"], strict=True)})
    d_idx = _order_index([p[0] for p in pairs], [d.value for d in Dtype])
    m_idx = _order_index([p[1] for p in pairs], [m.value for m in Mode])
    return sorted(pairs, key=lambda p: (d_idx[p[0]], m_idx[p[1]]))


def panel_title(dtype: str, mode: str, pairs: Sequence[tuple[str, str]]) -> str:
    """Title of one (dtype, mode) panel; empty when there is only one panel."""
    return "" if len(pairs) <= 1 else f"{dtype}, {mode}"


def labelled(rows: pd.DataFrame) -> pd.DataFrame:
    """rows with a 'label' column: the case name, plus the shape fields that tell apart
    rows sharing that name (e.g. a case run at two batch sizes)."""
    out = rows.copy()
    labels = out["case"].astype(str).tolist()
    for case, group in out.groupby("case", sort=False):
        shapes = group[list(SHAPE_FIELDS)].drop_duplicates()
        if len(shapes) <= 1:
            continue
        varying = [f for f in SHAPE_FIELDS if shapes[f].nunique() > 1]
        for idx in group.index:
            pos = int(out.index.get_loc(idx))  # type: ignore[arg-type]
            values = [str(out.at[idx, f]) for f in varying]
            pairs = zip(varying, values, strict=True)
            suffix = " ".join(FIELD_SYMBOL[f] + "=" + v for f, v in pairs)
            labels[pos] = str(case) + " " + suffix
    out["case_label"] = labels
    devices = device_names(out)
    if len(devices) > 1:  # rows of several devices never share a label (a bar, a table row)
        labels = [f"{lab} @ {dev}" for lab, dev in zip(labels, out["device_name"], strict=True)]
    out["label"] = labels
    return out


def label_order(rows: pd.DataFrame) -> list[str]:
    """Labels in the order their rows appear (the suite's order)."""
    return list(dict.fromkeys(rows["label"].tolist()))


_NETWORK_NAMES = {"rednet": "RedNet", "resnet": "ResNet"}


def network_name(model: str) -> str:
    """'rednet-26' -> 'RedNet-26': how papers write the networks."""
    family, _, depth = model.partition("-")
    pretty = _NETWORK_NAMES.get(family.lower(), family)
    return f"{pretty}-{depth}" if depth else pretty


def is_model_level(rows: pd.DataFrame) -> bool:
    """Whether the rows time whole networks (their `model` column names one)."""
    return "model" in rows.columns and bool(
        rows["model"].fillna("").astype(str).str.len().gt(0).any()
    )


def series_names(rows: pd.DataFrame) -> dict[str, str]:
    """The legend name of each backend's series.

    Model-level rows: the network the backend ran, with the backend in parentheses
    ('RedNet-26 (unfold)'); the depth is left out when the backend ran several depths.
    Other rows: the backend's own name.
    """
    names = {str(b): str(b) for b in rows["backend"].unique()}
    if not is_model_level(rows):
        return names
    for backend, group in rows.groupby("backend", sort=False):
        models = sorted(set(group["model"].fillna("").astype(str)) - {""})
        if not models:
            continue
        shown = [network_name(m) for m in models]
        families = list(dict.fromkeys(n.split("-")[0] for n in shown))
        network = shown[0] if len(shown) == 1 else "/".join(families)
        names[str(backend)] = f"{network} ({backend})"
    return names


def category_axis_label(rows: pd.DataFrame) -> str:
    """The x-axis label of the bar figures: what their categories (the cases) are."""
    return "network depth / batch (case)" if is_model_level(rows) else "layer (case)"


def ok_rows(rs: ResultSet) -> pd.DataFrame:
    rows = rs.rows
    if rows.empty:
        raise PlotError(f"{rs.directory} holds no result rows")
    ok = rows[(rows["status"] == Status.OK.value) & rows["median_ms"].notna()]
    if ok.empty:
        raise PlotError(f"{rs.directory} has no rows with status ok to plot")
    return labelled(ok).reset_index(drop=True)


def all_rows(rs: ResultSet) -> pd.DataFrame:
    """Every row (any status), labelled: figures mark the rows that did not run."""
    return labelled(rs.rows).reset_index(drop=True)


def health_warnings(rs: ResultSet) -> list[str]:
    """'case (dtype, mode) backend: warnings' for every row that carries health warnings
    (runs that record them have a 'warnings' column)."""
    rows = rs.rows
    if "warnings" not in rows.columns:
        return []
    out = []
    for _, r in labelled(rows).iterrows():
        text = r["warnings"]
        if isinstance(text, str) and text.strip():
            out.append(f"{r['label']} ({r['dtype']}, {r['mode']}) {r['backend']}: {text.strip()}")
    return out


def sample_map(rs: ResultSet) -> dict[tuple[Any, ...], list[np.ndarray]]:
    """Raw samples (ms) keyed by the KEY_COLUMNS tuple of their row, one array per run.

    A result set with a `run` column (several runs of a side merged) gives one array
    per run, so the interval of a ratio holds the run-to-run variation as compare's does.
    """
    s = rs.samples
    if s is None or s.empty or "ms" not in s.columns:
        return {}
    out: dict[tuple[Any, ...], list[np.ndarray]] = {}
    for key, group in s.groupby(list(KEY_COLUMNS), sort=False):
        runs = [group] if RUN_COLUMN not in group else [g for _, g in group.groupby(RUN_COLUMN)]
        out[_norm_key(key)] = [g["ms"].to_numpy(dtype=np.float64) for g in runs]
    return out


def _norm_key(key: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(int(v) if isinstance(v, np.integer) else v for v in key)


def row_key(row: pd.Series) -> tuple[Any, ...]:
    return _norm_key([row[k] for k in KEY_COLUMNS])


# ---------------------------------------------------------------------------------------
# One table per figure kind. Columns shared by all: dtype, mode, label, backend.


def latency_points(rs: ResultSet) -> pd.DataFrame:
    rows = ok_rows(rs)
    cols = ["dtype", "mode", "label", "backend", "median_ms", "p20_ms", "p80_ms", "n_samples"]
    return rows[cols].reset_index(drop=True)


def backends_in(rs: ResultSet) -> list[str]:
    return order_backends(set(rs.rows["backend"].astype(str)))


def check_baseline(rs: ResultSet, baseline: str) -> None:
    present = backends_in(rs)
    if baseline not in present:
        raise PlotError(
            f"baseline backend {baseline!r} is not in {rs.directory} "
            f"(backends there: {', '.join(present)})"
        )
    ok = ok_rows(rs)
    if not (ok["backend"] == baseline).any():
        raise PlotError(f"baseline backend {baseline!r} has no ok rows in {rs.directory}")


def speedup_table(rs: ResultSet, baseline: str) -> pd.DataFrame:
    """Baseline median over each other backend's median, per (dtype, mode, label).

    ci_low/ci_high: bootstrap 95% CI of that ratio from the raw samples (NaN without).
    """
    check_baseline(rs, baseline)
    rows = ok_rows(rs)
    samples = sample_map(rs)
    base = {
        (r["dtype"], r["mode"], r["label"]): r
        for _, r in rows[rows["backend"] == baseline].iterrows()
    }
    records = []
    for _, r in rows.iterrows():
        if r["backend"] == baseline:
            continue
        b = base.get((r["dtype"], r["mode"], r["label"]))
        if b is None:
            continue
        speedup = float(b["median_ms"]) / float(r["median_ms"])
        lo, hi = bootstrap_ratio_ci(samples.get(row_key(b), []), samples.get(row_key(r), []))
        records.append(
            {
                "dtype": r["dtype"],
                "mode": r["mode"],
                "label": r["label"],
                "backend": r["backend"],
                "baseline": baseline,
                "baseline_ms": float(b["median_ms"]),
                "median_ms": float(r["median_ms"]),
                "speedup": speedup,
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    cols = [
        "dtype",
        "mode",
        "label",
        "backend",
        "baseline",
        "baseline_ms",
        "median_ms",
        "speedup",
        "ci_low",
        "ci_high",
    ]
    return pd.DataFrame(records, columns=cols)


@dataclass(frozen=True)
class PerfUnit:
    name: str  # "TFLOP/s"
    scale: float  # FLOP/s per unit


PERF_UNITS = (
    PerfUnit("TFLOP/s", 1e12),
    PerfUnit("GFLOP/s", 1e9),
    PerfUnit("MFLOP/s", 1e6),
)


def perf_unit(max_flops_per_s: float) -> PerfUnit:
    """The largest unit in which the fastest point is at least 1."""
    for unit in PERF_UNITS:
        if max_flops_per_s >= unit.scale:
            return unit
    return PERF_UNITS[-1]


def roofline_table(rs: ResultSet) -> pd.DataFrame:
    """Arithmetic intensity (analytic FLOPs / fewest bytes) and achieved FLOP/s per row."""
    rows = ok_rows(rs)
    rows = rows[(rows["flops"] > 0) & (rows["bytes"] > 0)]
    if rows.empty:
        raise PlotError(f"{rs.directory}: no ok row has analytic flops and bytes for a roofline")
    out = rows[["dtype", "mode", "label", "backend", "flops", "bytes", "median_ms"]].copy()
    out["intensity"] = out["flops"].astype(float) / out["bytes"].astype(float)
    out["flops_per_s"] = out["flops"].astype(float) / (out["median_ms"] * 1e-3)
    out["gbps"] = out["bytes"].astype(float) / (out["median_ms"] * 1e-3) / 1e9
    unit = perf_unit(float(out["flops_per_s"].max()))
    out["perf"] = out["flops_per_s"] / unit.scale
    out["perf_unit"] = unit.name
    return out.reset_index(drop=True)


def memory_table(rs: ResultSet) -> pd.DataFrame:
    rows = ok_rows(rs)
    rows = rows[rows["peak_mem_bytes"].notna()]
    if rows.empty:
        raise PlotError(f"{rs.directory}: no ok row has a peak memory measurement")
    out = rows[["dtype", "mode", "label", "backend", "peak_mem_bytes", "mem_method"]].copy()
    out["peak_mib"] = out["peak_mem_bytes"].astype(float) / MIB
    out["resolution_bytes"] = [RESOLUTION_BYTES.get(str(m), 0) for m in out["mem_method"]]
    out["below_resolution"] = [
        below_resolution(float(b), str(m))
        for b, m in zip(out["peak_mem_bytes"], out["mem_method"], strict=True)
    ]
    if out["below_resolution"].all():
        methods = ", ".join(sorted(set(out["mem_method"].astype(str))))
        raise PlotError(
            f"{rs.directory}: every peak is below what {methods} can resolve "
            f"({resolution_text(out)}); nothing to plot"
        )
    return out.reset_index(drop=True)


def resolution_text(table: pd.DataFrame) -> str:
    """'64 KiB for rss-hwm' for each method in a memory table."""
    pairs = dict(zip(table["mem_method"].astype(str), table["resolution_bytes"], strict=True))
    return ", ".join(f"{human_bytes(b)} for {m}" for m, b in sorted(pairs.items()))


def sweep_field(rs: ResultSet) -> str | None:
    """The one shape field that varies across the ok rows, or None when it is not a sweep."""
    rows = ok_rows(rs)
    varying = [f for f in SHAPE_FIELDS if rows[f].nunique() > 1]
    if len(varying) == 1 and varying[0] in SWEEP_FIELDS:
        return varying[0]
    return None


def sweep_table(rs: ResultSet) -> tuple[str, pd.DataFrame]:
    field = sweep_field(rs)
    if field is None:
        rows = ok_rows(rs)
        varying = [f for f in SHAPE_FIELDS if rows[f].nunique() > 1]
        what = ", ".join(varying) if varying else "none"
        raise PlotError(
            f"{rs.directory} is not a sweep: a sweep varies exactly one of "
            f"{', '.join(SWEEP_FIELDS)} (varying here: {what})"
        )
    rows = ok_rows(rs)
    out = rows[["dtype", "mode", "backend", field, "median_ms", "p20_ms", "p80_ms"]].copy()
    out = out.rename(columns={field: "x"})
    out["field"] = field
    out = out.sort_values(["dtype", "mode", "backend", "x"], kind="stable")
    return field, out.reset_index(drop=True)


def compare_table(a: ResultSet, b: ResultSet) -> pd.DataFrame:
    """Rows present in both sets (equal KEY_COLUMNS, both ok): ratio = median_b / median_a.

    ci_low/ci_high: bootstrap 95% CI of the ratio from the raw samples (NaN without).
    """
    ra, rb = ok_rows(a), ok_rows(b)
    sa, sb = sample_map(a), sample_map(b)
    index_b = {row_key(r): r for _, r in rb.iterrows()}
    records = []
    for _, r in ra.iterrows():
        key = row_key(r)
        other = index_b.get(key)
        if other is None:
            continue
        lo, hi = bootstrap_ratio_ci(sb.get(key, []), sa.get(key, []))
        records.append(
            {
                "dtype": r["dtype"],
                "mode": r["mode"],
                "label": r["label"],
                "backend": r["backend"],
                "a_ms": float(r["median_ms"]),
                "b_ms": float(other["median_ms"]),
                "ratio": float(other["median_ms"]) / float(r["median_ms"]),
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    cols = ["dtype", "mode", "label", "backend", "a_ms", "b_ms", "ratio", "ci_low", "ci_high"]
    out = pd.DataFrame(records, columns=cols)
    if out.empty:
        raise PlotError(
            f"{a.directory} and {b.directory} share no ok rows (same suite, case, backend, "
            "device, dtype, mode and shape) to compare"
        )
    return out
