"""The table printed at the end of a run."""

from __future__ import annotations

from io import StringIO

from rich.console import Console

from invbench.render.summary import summary_table
from tests.render.test_health import ok_row


def test_a_peak_below_the_methods_resolution_is_not_printed_as_zero() -> None:
    from dataclasses import replace

    rows = [
        replace(ok_row(0), peak_mem_bytes=0, mem_method="rss-hwm"),
        replace(ok_row(1), peak_mem_bytes=3 * 2**20, mem_method="rss-hwm"),
        replace(ok_row(2), peak_mem_bytes=0, mem_method="torch-cuda-peak"),
    ]
    buffer = StringIO()
    Console(file=buffer, width=200, no_color=True).print(summary_table(rows))
    lines = buffer.getvalue().splitlines()
    by_backend = {b: next(line for line in lines if f" {b} " in line) for b in ("b0", "b1", "b2")}
    assert "< 64.0 KiB" in by_backend["b0"] and "0 B" not in by_backend["b0"]
    assert "3.0 MiB" in by_backend["b1"]
    assert "0 B" in by_backend["b2"]  # torch's allocator counts every byte: a true zero
