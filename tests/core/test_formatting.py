from __future__ import annotations

import math

import pytest

from invbench.core.formatting import fmt_ms, human_bytes, md_escape


@pytest.mark.parametrize(
    ("ms", "text"),
    [(None, "-"), (math.nan, "-"), (0.042, "42.0 us"), (1.2345, "1.234 ms"), (28.94, "28.9 ms")],
)
def test_fmt_ms(ms: float | None, text: str) -> None:
    assert fmt_ms(ms) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, "-"),
        (512, "512 B"),
        (2048, "2.0 KiB"),
        (57.9 * 2**20, "57.9 MiB"),
        (3 * 2**40, "3072.0 GiB"),
    ],
)
def test_human_bytes(n: float | None, text: str) -> None:
    assert human_bytes(n) == text


def test_md_escape_keeps_a_cell_on_one_line() -> None:
    assert md_escape("a|b\nc") == "a\\|b c"
