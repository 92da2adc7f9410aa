"""The readable table printed at the end of a run."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from invbench.core.formatting import fmt_ms, human_bytes
from invbench.core.spec import Status
from invbench.measure.ceiling_record import Ceilings, roof_ms
from invbench.measure.memory import RESOLUTION_BYTES, below_resolution
from invbench.storage.results import ResultRow

BASELINE_BACKEND = "unfold"


def _in_display_order(rows: Sequence[ResultRow], backend_order: Sequence[str]) -> list[ResultRow]:
    """Groups in the order they ran; inside a group, backends in backend_order."""
    first: dict[tuple[str, str, str], int] = {}
    for i, r in enumerate(rows):
        first.setdefault((r.case, r.dtype, r.mode), i)
    rank = {name: i for i, name in enumerate(backend_order)}
    return sorted(
        rows,
        key=lambda r: (first[(r.case, r.dtype, r.mode)], rank.get(r.backend, len(rank)), r.model),
    )


def _peak_text(row: ResultRow) -> str:
    """The peak memory, or '< 64.0 KiB' when it is below what its method resolves."""
    if below_resolution(row.peak_mem_bytes, row.mem_method):
        return f"< {human_bytes(RESOLUTION_BYTES[row.mem_method])}"
    return human_bytes(row.peak_mem_bytes)


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def summary_table(
    rows: Sequence[ResultRow],
    title: str = "",
    backend_order: Sequence[str] = (),
    ceilings: Ceilings | None = None,
) -> Table:
    """One line per row, grouped by case; speed-up is the unfold median over this one.

    Layer rows add their measured generation + aggregation medians; model rows show
    the model with its backend, and images/s in place of GB/s. With the run's ceilings,
    "roof" is the row's share of its roof (measure.ceiling_record.roof_ms: bytes over the
    copy bandwidth or FLOPs over the matmul peak, whichever is larger).
    """
    unfold = {
        (r.case, r.dtype, r.mode): r.median_ms
        for r in rows
        if r.backend == BASELINE_BACKEND and r.status == Status.OK and r.median_ms
    }
    table = Table(title=title or None, show_lines=False)
    for col in ("case", "dtype", "mode", "backend"):
        table.add_column(col, no_wrap=True)
    models = any(r.level == "model" for r in rows)
    split = any(r.gen_ms is not None for r in rows)
    rate = "GB/s | img/s" if models else "GB/s"
    extra = ("gen + agg",) if split else ()
    roof = ("roof",) if ceilings is not None else ()
    for col in (
        "median",
        "p20-p80",
        *extra,
        rate,
        *roof,
        "peak mem",
        "rel err",
        "vs " + BASELINE_BACKEND,
    ):
        table.add_column(col, justify="right", no_wrap=True)
    previous = None
    for r in _in_display_order(rows, backend_order):
        group = (r.case, r.dtype, r.mode)
        if previous is not None and group[0] != previous[0]:
            table.add_section()
        previous = group
        backend = f"{r.model} ({r.backend})" if r.model else r.backend
        if r.status != Status.OK:
            table.add_row(
                r.case,
                r.dtype,
                r.mode,
                backend,
                f"[yellow]{r.status}[/]",
                _short(r.reason),
                *[""] * (4 + len(extra) + len(roof)),
            )
            continue
        base = unfold.get(group)
        speed = f"{base / r.median_ms:.2f}x" if base and r.median_ms else "-"
        err = f"{r.max_rel_err:.1e}" if r.max_rel_err is not None else "-"
        parts = (
            (f"{fmt_ms(r.gen_ms)} + {fmt_ms(r.agg_ms)}" if r.gen_ms is not None else "-",)
            if split
            else ()
        )
        share: tuple[str, ...] = ()
        if roof:
            floor = roof_ms(ceilings, r.flops, r.bytes, r.dtype) if r.level == "op" else None
            share = (f"{floor / r.median_ms:.0%}" if floor and r.median_ms else "-",)
        if r.images_per_s is not None:
            throughput = f"{r.images_per_s:.1f} img/s"
        else:
            throughput = f"{r.gbps:.3g}" if r.gbps is not None else "-"
        table.add_row(
            r.case,
            r.dtype,
            r.mode,
            backend,
            fmt_ms(r.median_ms),
            f"{fmt_ms(r.p20_ms)} - {fmt_ms(r.p80_ms)}",
            *parts,
            throughput,
            *share,
            _peak_text(r),
            err,
            speed,
        )
    return table
