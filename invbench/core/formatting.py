"""How numbers and text are shown to people: one formatter of each kind.

Used by the console tables, the reports, the comparisons and the profile output, so a
duration or a size reads the same wherever it appears.
"""

from __future__ import annotations

import math


def fmt_ms(ms: float | None) -> str:
    """A duration given in milliseconds: `42.0 us`, `1.234 ms`, `28.9 ms`; `-` for none."""
    if ms is None or math.isnan(ms):
        return "-"
    if ms < 0.1:
        return f"{ms * 1e3:.1f} us"
    return f"{ms:.3f} ms" if ms < 10 else f"{ms:.1f} ms"


def human_bytes(n: float | None) -> str:
    """A size in bytes with a binary unit: `512 B`, `57.9 MiB`; `-` for none."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # unreachable: the loop returns at GiB


def md_escape(text: str) -> str:
    """Text safe inside a markdown table cell: pipes escaped, line breaks flattened."""
    return text.replace("|", "\\|").replace("\n", " ")
