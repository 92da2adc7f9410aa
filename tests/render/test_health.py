"""The health warnings after a run: every row when few are flagged, a summary when many are."""

from __future__ import annotations

from io import StringIO

from rich.console import Console

from invbench.render.health import LIST_UP_TO, health_table
from invbench.storage.results import ResultRow


def ok_row(i: int, warnings: str = "") -> ResultRow:
    return ResultRow(
        suite="resnet-shapes",
        case=f"case{i // 5}",
        backend=f"b{i % 5}",
        kind="involution",
        device="cpu",
        dtype="float32",
        mode="fwd",
        batch=2,
        channels=8,
        height=8,
        width=8,
        kernel_size=3,
        stride=1,
        dilation=1,
        groups=1,
        padding=1,
        out_height=8,
        out_width=8,
        status="ok",
        median_ms=1.0,
        warnings=warnings,
    )


def text_of(table: object) -> str:
    buffer = StringIO()
    Console(file=buffer, width=160, no_color=True).print(table)
    return buffer.getvalue()


def test_many_flagged_rows_are_summarised_by_kind() -> None:
    rows = []
    for i in range(40):  # 35 of 40 flagged, as a default CPU run on a small machine
        iqr, ci = 20.0 + i, 6.0 + i / 10
        warnings = [f"noisy: IQR is {iqr:.1f}% of the median (> 10%)"]
        if i % 2 == 0:
            warnings.append(f"unconverged: median CI +/-{ci:.1f}% > target 5.0%")
        rows.append(ok_row(i, "; ".join(warnings) if i < 35 else ""))
    text = text_of(health_table(rows, where="out/results.csv"))
    lines = text.strip().splitlines()
    assert len(lines) <= 12, text  # not one line per warning (53 here)
    assert "health warnings: 35 of 40 ok rows" in text
    noisy = next(line for line in lines if line.startswith("│ noisy"))
    assert "35" in noisy and "case6 float32 fwd b4: IQR is 54.0%" in noisy
    assert "--max-time" in noisy  # what to do
    unconverged = next(line for line in lines if line.startswith("│ unconverged"))
    assert "18" in unconverged and "case6 float32 fwd b4: median CI +/-9.4%" in unconverged
    assert "warnings column of out/results.csv" in text


def test_few_flagged_rows_are_listed_warning_by_warning() -> None:
    rows = [ok_row(0, "noisy: IQR is 12.0% of the median (> 10%); short: median 3.00 us < 5 us")]
    rows += [ok_row(i) for i in range(1, 10)]
    assert LIST_UP_TO >= 1
    text = text_of(health_table(rows))
    assert "noisy: IQR is 12.0%" in text and "short: median 3.00 us" in text
    assert health_table([ok_row(1)]) is None


def test_every_untrusted_row_gets_one_plain_line() -> None:
    from invbench.render.health import untrusted_lines

    rows = [
        ok_row(0, "noisy: IQR is 12% of the median (> 10%)"),  # noisy alone: still usable
        ok_row(1, "bimodal: 30% of samples near 0.149 ms, the rest near 43 us; noisy: x"),
        ok_row(2, "steal: the hypervisor took 9% of the CPU time while timing"),
        ok_row(3),
    ]
    lines = untrusted_lines(rows)
    assert len(lines) == 2
    assert lines[0].startswith("do not trust ") and "bimodal: 30% of samples" in lines[0]
    assert "noisy" not in lines[0] and "steal: the hypervisor" in lines[1]
    many = untrusted_lines([ok_row(i, "drifting: samples rose 9%") for i in range(50)], "r.csv")
    assert len(many) == 41 and many[-1] == "... and 10 more rows: the warnings column of r.csv"
