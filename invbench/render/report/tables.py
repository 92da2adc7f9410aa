"""The report's four tables (latency, speed-up, throughput, memory) built from a result set,
and the numbers' one formatting rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from invbench.core.spec import Status
from invbench.measure.ceiling_record import measured_ceilings, roof_ms
from invbench.render.plots.caption import caption_details, caption_line
from invbench.render.plots.data import (
    MIB,
    PlotError,
    all_rows,
    backends_in,
    health_warnings,
    label_order,
    ok_rows,
)
from invbench.storage.results import ResultSet, device_names

DEFAULT_BASELINE = "unfold"


Best = Literal["min", "max"]
RowKey = tuple[str, ...]  # (case label, dtype, mode); (case, device, dtype, mode) for several
KEY_NAMES = ("case", "dtype", "mode")
DEVICE_KEY_NAMES = ("case", "device", "dtype", "mode")
DEVICE_COLUMN = "report_device"  # set on the rows of a report of several devices
Cell = float | str | None  # a number, the status of a row that did not run, or nothing


@dataclass(frozen=True)
class Metric:
    key: str  # column of the CSV: BACKEND.key
    header: str
    unit: str
    best: Best | None = None  # bold the best value of each row by this rule


@dataclass
class Table:
    name: str
    title: str
    metrics: list[Metric]
    backends: list[str]
    rows: list[RowKey]
    cells: dict[tuple[RowKey, str, str], Cell] = field(default_factory=dict)
    note: str = ""
    key_names: tuple[str, ...] = KEY_NAMES  # the columns naming a row

    def cell(self, row: RowKey, backend: str, metric: str) -> Cell:
        return self.cells.get((row, backend, metric))

    def best(self, row: RowKey, metric: Metric) -> float | None:
        """The best number of this row and metric across backends (None without a rule)."""
        if metric.best is None:
            return None
        values = [
            v
            for b in self.backends
            if isinstance(v := self.cell(row, b, metric.key), float) and math.isfinite(v)
        ]
        if len(values) < 2 or len({fmt_number(v) for v in values}) == 1:
            return None  # nothing to choose between: no bold
        return min(values) if metric.best == "min" else max(values)

    def is_best(self, row: RowKey, backend: str, metric: Metric) -> bool:
        best = self.best(row, metric)
        v = self.cell(row, backend, metric.key)
        return best is not None and isinstance(v, float) and fmt_number(v) == fmt_number(best)


@dataclass
class Report:
    title: str
    caption: str
    details: list[str]
    tables: list[Table]
    warnings: list[str] = field(default_factory=list)  # rows with health warnings


# ---------------------------------------------------------------------------------------
# Numbers


def fmt_number(v: float, sig: int = 3) -> str:
    """Plain decimal with `sig` significant digits (integers keep all theirs): no exponent,
    no thousands separator, so siunitx, spreadsheets and parsers all read it."""
    if not math.isfinite(v):
        return "nan"
    if v == 0:
        return "0"
    digits = max(0, sig - 1 - math.floor(math.log10(abs(v))))
    text = f"{v:.{digits}f}"
    return "0" if float(text) == 0 else text


def cell_text(v: Cell) -> str:
    """A cell as text: a number by fmt_number, a status as is, nothing as empty."""
    if v is None:
        return ""
    if isinstance(v, float):
        return fmt_number(v)
    return v


def _status_text(status: str) -> str:
    return {
        Status.OOM.value: "OOM",
        Status.SKIPPED.value: "skipped",
        Status.ERROR.value: "error",
        Status.INCORRECT.value: "wrong",
    }.get(status, status)


# ---------------------------------------------------------------------------------------
# Building the tables


def _row_keys(rows: pd.DataFrame) -> list[RowKey]:
    pairs = list(dict.fromkeys(zip(rows["dtype"], rows["mode"], strict=True)))
    keys = {(str(r["label"]), str(r["dtype"]), str(r["mode"])): _key(r) for _, r in rows.iterrows()}
    labels = label_order(rows)
    if DEVICE_COLUMN in rows.columns:  # several devices: each case's rows, device by device
        cases = list(dict.fromkeys(rows["case_label"].astype(str)))
        first = {str(r["label"]): cases.index(str(r["case_label"])) for _, r in rows.iterrows()}
        labels = sorted(labels, key=lambda lab: first[lab])  # stable: devices keep their order
    return [keys[(lab, d, m)] for d, m in pairs for lab in labels if (lab, d, m) in keys]


def _key(r: Any) -> RowKey:
    if DEVICE_COLUMN in r.index:
        return (str(r["case_label"]), str(r[DEVICE_COLUMN]), str(r["dtype"]), str(r["mode"]))
    return (str(r["label"]), str(r["dtype"]), str(r["mode"]))


def _mark_failures(table: Table, every: pd.DataFrame) -> None:
    """Rows that did not run show their status in their group's first column."""
    first = table.metrics[0].key
    for _, r in every.iterrows():
        if r["status"] != Status.OK.value and r["backend"] in table.backends:
            table.cells.setdefault((_key(r), str(r["backend"]), first), _status_text(r["status"]))


def latency_table(rs: ResultSet, every: pd.DataFrame, ok: pd.DataFrame) -> Table:
    backends = [b for b in backends_in(rs) if (ok["backend"] == b).any()]
    table = Table(
        "latency",
        "Latency per call: median and spread ((p80 - p20) / median)",
        [Metric("median_ms", "median", "ms", "min"), Metric("spread_pct", "spread", "%")],
        backends,
        _row_keys(every),
    )
    for _, r in ok.iterrows():
        k, b = _key(r), str(r["backend"])
        med = float(r["median_ms"])
        table.cells[(k, b, "median_ms")] = med
        if pd.notna(r["p20_ms"]) and pd.notna(r["p80_ms"]) and med > 0:
            spread = float(r["p80_ms"]) - float(r["p20_ms"])
            table.cells[(k, b, "spread_pct")] = spread / med * 100
    _mark_failures(table, every)
    return table


def speedup_table(rs: ResultSet, every: pd.DataFrame, ok: pd.DataFrame, baseline: str) -> Table:
    base = {_key(r): float(r["median_ms"]) for _, r in ok[ok["backend"] == baseline].iterrows()}
    backends = [b for b in backends_in(rs) if b != baseline and (ok["backend"] == b).any()]
    table = Table(
        "speedup",
        f"Speed-up over {baseline} (its median latency / each backend's; above 1: faster)",
        [Metric("speedup", "speed-up", "x", "max")],
        backends,
        [k for k in _row_keys(every) if k in base],
    )
    for _, r in ok.iterrows():
        k, b = _key(r), str(r["backend"])
        if b == baseline or k not in base:
            continue
        table.cells[(k, b, "speedup")] = base[k] / float(r["median_ms"])
    _mark_failures(table, every[every["backend"] != baseline])
    return table


def throughput_table(rs: ResultSet, every: pd.DataFrame, ok: pd.DataFrame) -> Table:
    """GB/s of the fewest bytes the op must move, % of the measured memory floor, and % of
    the roof (bytes over the copy bandwidth or FLOPs over the matmul peak, the larger)."""
    device = str(ok["device"].iloc[0])
    # one meta's ceilings cannot be every device's: several devices use roofline_frac
    ceilings = None if DEVICE_COLUMN in ok.columns else measured_ceilings(rs.meta, device)
    bandwidth = ceilings.bandwidth.value if ceilings and ceilings.bandwidth else None
    has_frac = "roofline_frac" in ok.columns and ok["roofline_frac"].notna().any()
    metrics = [Metric("gbps", "throughput", "GB/s", "max")]
    if bandwidth is not None or has_frac:
        metrics.append(Metric("floor_pct", "of floor", "%"))
    if ceilings is not None:
        metrics.append(Metric("roof_pct", "of roof", "%", "max"))
    backends = [b for b in backends_in(rs) if (ok["backend"] == b).any()]
    note = (
        f"Floor: the fewest bytes over the measured copy bandwidth ({bandwidth:.0f} GB/s)."
        if bandwidth is not None
        else (
            "Floor: from the run's roofline_frac column."
            if has_frac
            else "No measured bandwidth in this run: % of floor omitted."
        )
    )
    table = Table(
        "throughput",
        "Throughput: fewest bytes moved per second",
        metrics,
        backends,
        _row_keys(every),
    )
    if ceilings is not None:
        note += (
            " Roof: the larger of those bytes over the copy bandwidth and the FLOPs over"
            " the measured matmul peak of the row's dtype (bandwidth alone where none)."
        )
    table.note = note
    for _, r in ok.iterrows():
        k, b = _key(r), str(r["backend"])
        if not r["bytes"] or r["bytes"] <= 0:
            continue
        gbps = float(r["bytes"]) / (float(r["median_ms"]) * 1e-3) / 1e9
        table.cells[(k, b, "gbps")] = gbps
        if bandwidth is not None:
            table.cells[(k, b, "floor_pct")] = gbps / bandwidth * 100
        elif has_frac and pd.notna(r["roofline_frac"]):
            table.cells[(k, b, "floor_pct")] = float(r["roofline_frac"]) * 100
        roof = roof_ms(ceilings, float(r["flops"]), float(r["bytes"]), str(r["dtype"]))
        if roof is not None:
            table.cells[(k, b, "roof_pct")] = roof / float(r["median_ms"]) * 100
    _mark_failures(table, every)
    return table


def memory_table(rs: ResultSet, every: pd.DataFrame, ok: pd.DataFrame) -> Table:
    has = ok[ok["peak_mem_bytes"].notna()]
    backends = [b for b in backends_in(rs) if (has["backend"] == b).any()]
    methods = ", ".join(sorted(set(has["mem_method"].astype(str)) - {""})) or "unrecorded"
    table = Table(
        "memory",
        "Peak memory of one call above the memory allocated before it",
        [Metric("peak_mib", "peak", "MiB", "min")],
        backends,
        _row_keys(every),
    )
    table.note = f"Measured by: {methods}."
    for _, r in has.iterrows():
        table.cells[(_key(r), str(r["backend"]), "peak_mib")] = float(r["peak_mem_bytes"]) / MIB
    _mark_failures(table, every)
    return table


def build_report(rs: ResultSet, baseline: str | None = None) -> Report:
    """The report's tables. baseline None: unfold, and no speed-up table without it;
    a baseline named explicitly must have ok rows in the results."""
    baseline_explicit = baseline is not None
    baseline = baseline or DEFAULT_BASELINE
    ok = ok_rows(rs)
    every = all_rows(rs)
    several = len(device_names(every)) > 1
    if several:
        ok[DEVICE_COLUMN] = ok["device_name"]
        every[DEVICE_COLUMN] = every["device_name"]
    tables = [latency_table(rs, every, ok)]
    if (ok["backend"] == baseline).any():
        tables.append(speedup_table(rs, every, ok, baseline))
    elif baseline_explicit:
        present = ", ".join(backends_in(rs))
        raise PlotError(
            f"baseline backend {baseline!r} has no ok rows in {rs.directory} "
            f"(backends there: {present})"
        )
    tables.append(throughput_table(rs, every, ok))
    if ok["peak_mem_bytes"].notna().any():
        tables.append(memory_table(rs, every, ok))
    if several:
        for t in tables:
            t.key_names = DEVICE_KEY_NAMES
    run = rs.meta.get("run") or {}
    title = f"invbench report: {run.get('suite') or rs.directory.name}"
    return Report(
        title,
        caption_line(rs, every),
        caption_details(rs, every),
        tables,
        health_warnings(rs),
    )
