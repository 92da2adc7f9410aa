"""`invbench report`: tables in four formats from the fixture result sets."""

from __future__ import annotations

import base64
import json
import re
import shutil
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from invbench.cli.app import main
from invbench.core.choices import ReportFormat
from invbench.render.report import build_report, fmt_number, render, to_csv, to_latex, to_markdown
from invbench.storage.results import load_results

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SMOKE = FIXTURES / "smoke-a"
RESNET = FIXTURES / "resnet-b1"


@pytest.fixture(scope="module")
def smoke():
    return load_results(SMOKE)


def _ok(rs) -> pd.DataFrame:
    return rs.rows[rs.rows["status"] == "ok"]


# ---------------------------------------------------------------------------------------
# Markdown parses back to the numbers of the rows


def parse_markdown_tables(text: str) -> dict[str, pd.DataFrame]:
    """Every '## title' followed by a pipe table -> DataFrame of strings (bold kept)."""
    tables: dict[str, pd.DataFrame] = {}
    title = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            title = line[3:].strip()
        elif line.startswith("|") and title is not None:
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            split = [
                [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row.strip()[1:-1])]
                for row in block
            ]
            header, rule, body = split[0], split[1], split[2:]
            assert all(set(c) <= set(":-") for c in rule), rule
            assert all(len(r) == len(header) for r in body)
            tables[title] = pd.DataFrame(body, columns=header)
            title = None
            continue
        i += 1
    return tables


def _number(cell: str) -> float:
    return float(cell.strip("*")) if cell.strip("*") else float("nan")


def test_markdown_parses_back_to_the_rows(smoke) -> None:
    text = to_markdown(build_report(smoke))
    tables = parse_markdown_tables(text)
    latency = next(t for title, t in tables.items() if title.startswith("Latency"))
    ok = _ok(smoke)
    assert len(latency) == len(ok.groupby(["case", "dtype", "mode"]))
    for _, r in ok.iterrows():
        row = latency[
            (latency["case"] == r["case"])
            & (latency["dtype"] == r["dtype"])
            & (latency["mode"] == r["mode"])
        ]
        assert len(row) == 1
        shown = _number(row[f"{r['backend']} median (ms)"].iloc[0])
        assert shown == pytest.approx(r["median_ms"], rel=5e-3)  # 3 significant digits
        spread = (r["p80_ms"] - r["p20_ms"]) / r["median_ms"] * 100
        assert _number(row[f"{r['backend']} spread (%)"].iloc[0]) == pytest.approx(
            spread, rel=5e-3, abs=1e-9
        )

    speedup = next(t for title, t in tables.items() if title.startswith("Speed-up"))
    base = ok[ok["backend"] == "unfold"].set_index(["case", "dtype", "mode"])["median_ms"]
    for _, r in ok[ok["backend"] != "unfold"].iterrows():
        row = speedup[(speedup["case"] == r["case"]) & (speedup["mode"] == r["mode"])]
        want = base[(r["case"], r["dtype"], r["mode"])] / r["median_ms"]
        assert _number(row[f"{r['backend']} speed-up (x)"].iloc[0]) == pytest.approx(want, rel=5e-3)


def test_markdown_bolds_the_fastest_backend_of_each_row(smoke) -> None:
    tables = parse_markdown_tables(to_markdown(build_report(smoke)))
    latency = next(t for title, t in tables.items() if title.startswith("Latency"))
    ok = _ok(smoke)
    for (case, dtype, mode), group in ok.groupby(["case", "dtype", "mode"]):
        fastest = group.loc[group["median_ms"].idxmin(), "backend"]
        row = latency[
            (latency["case"] == case) & (latency["dtype"] == dtype) & (latency["mode"] == mode)
        ].iloc[0]
        bold = [c for c in latency.columns if "median" in c and row[c].startswith("**")]
        assert bold == [f"{fastest} median (ms)"]


def test_throughput_against_a_measured_floor(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(RESNET, run)
    meta = json.loads((run / "meta.json").read_text())
    meta["ceilings"] = {"copy": {"gbps": 4.0}}
    (run / "meta.json").write_text(json.dumps(meta))
    rs = load_results(run)
    tables = parse_markdown_tables(to_markdown(build_report(rs)))
    tput = next(t for title, t in tables.items() if title.startswith("Throughput"))
    for _, r in _ok(rs).iterrows():
        row = tput[tput["case"] == r["case"]].iloc[0]
        gbps = r["bytes"] / (r["median_ms"] * 1e-3) / 1e9
        assert _number(row[f"{r['backend']} throughput (GB/s)"]) == pytest.approx(gbps, rel=5e-3)
        pct = _number(row[f"{r['backend']} of floor (%)"])
        assert pct == pytest.approx(gbps / 4.0 * 100, rel=5e-3)
    # without ceilings the column is left out, and the report says so
    plain = to_markdown(build_report(load_results(RESNET)))
    assert "of floor (%)" not in plain and "% of floor omitted" in plain


def test_share_of_the_roof_takes_the_larger_of_both_ceilings(tmp_path: Path) -> None:
    from invbench.render.summary import summary_table
    from invbench.storage.results import row_from_record

    run = tmp_path / "run"
    shutil.copytree(RESNET, run)
    meta = json.loads((run / "meta.json").read_text())
    # 4 GB/s and 40 GFLOP/s: rows above 10 FLOP/byte are compute-bound, the others not
    meta["ceilings"] = {"copy": {"gbps": 4.0}, "matmul": [{"tflops": 0.04, "dtype": "float32"}]}
    (run / "meta.json").write_text(json.dumps(meta))
    rs = load_results(run)
    tables = parse_markdown_tables(to_markdown(build_report(rs)))
    tput = next(t for title, t in tables.items() if title.startswith("Throughput"))
    ok = _ok(rs)
    bounds = set()
    for _, r in ok.iterrows():
        row = tput[tput["case"] == r["case"]].iloc[0]
        memory_ms, compute_ms = r["bytes"] / 4e9 * 1e3, r["flops"] / 40e9 * 1e3
        roof = max(memory_ms, compute_ms) if r["dtype"] == "float32" else memory_ms
        bounds.add(compute_ms > memory_ms)
        want = roof / r["median_ms"] * 100
        assert _number(row[f"{r['backend']} of roof (%)"]) == pytest.approx(want, rel=5e-3)
    assert bounds == {True, False}  # both ceilings decided some row
    from invbench.measure.ceiling_record import measured_ceilings

    table = summary_table(
        [row_from_record(rec) for rec in rs.rows.to_dict("records")],
        ceilings=measured_ceilings(rs.meta, "cpu"),
    )
    out = StringIO()
    from rich.console import Console

    Console(file=out, width=250).print(table)
    assert "roof" in out.getvalue() and "%" in out.getvalue()


def test_failed_rows_show_their_status(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(RESNET, run)
    rows = pd.read_parquet(run / "results.parquet")
    hit = (rows["backend"] == "unfold") & (rows["case"] == "layer1")
    rows.loc[hit, ["status", "median_ms"]] = ["oom", None]
    rows.to_parquet(run / "results.parquet", index=False)
    report = build_report(load_results(run))
    tables = parse_markdown_tables(to_markdown(report))
    latency = next(t for title, t in tables.items() if title.startswith("Latency"))
    assert latency.loc[latency["case"] == "layer1", "unfold median (ms)"].iloc[0] == "OOM"
    frame = pd.read_csv(StringIO(to_csv(report))).set_index("case")
    assert frame.at["layer1", "unfold.status"] == "OOM"
    assert np.isnan(frame.at["layer1", "unfold.median_ms"])
    assert frame.at["layer2", "unfold.status"] == "ok"


# ---------------------------------------------------------------------------------------
# LaTeX


def _balanced(text: str) -> None:
    stack: list[str] = []
    for kind, env in re.findall(r"\\(begin|end)\{([^}]*)\}", text):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack.pop() == env, f"unbalanced \\end{{{env}}}"
    assert not stack, f"unclosed: {stack}"
    depth = 0
    for ch in re.sub(r"\\[{}]", "", text):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0


def test_latex_is_balanced_booktabs_with_siunitx_columns(smoke) -> None:
    text = to_latex(build_report(smoke))
    body = "\n".join(line for line in text.splitlines() if not line.startswith("%"))
    _balanced(body)
    tabulars = re.findall(r"\\begin\{tabular\}\{(.*?)\}\n(.*?)\\end\{tabular\}", body, re.S)
    assert len(tabulars) == 4  # latency, speed-up, throughput, memory
    for spec, content in tabulars:
        assert content.count("\\toprule") == content.count("\\midrule") == 1
        assert content.count("\\bottomrule") == 1
        assert "\\hline" not in content
        ncols = len(re.findall(r"S\[table-format=\d+\.\d+\]|l", spec))
        rows = [r for r in content.split("\\\\") if "&" in r]
        for r in rows:
            cells = r.split("\\midrule")[-1].split("&")
            width = sum(
                int(m.group(1)) if (m := re.search(r"\\multicolumn\{(\d+)\}", c)) else 1
                for c in cells
            )
            assert width == ncols, r
        # numbers in S columns are plain decimals: no exponent, no thousands separator
        for value in re.findall(r"(?<=& )(?:\\bfseries )?([-\d.]+)(?= &| \\\\)", content):
            assert re.fullmatch(r"-?\d+(\.\d+)?", value)
    assert "\\bfseries" in body


def test_latex_escapes_names() -> None:
    from invbench.render.report import tex_escape

    assert tex_escape("cuda_ext 50%") == "cuda\\_ext 50\\%"


# ---------------------------------------------------------------------------------------
# CSV and HTML


def test_csv_is_one_wide_table_of_the_rows(smoke) -> None:
    frame = pd.read_csv(StringIO(to_csv(build_report(smoke))))
    assert list(frame.columns[:3]) == ["case", "dtype", "mode"]
    ok = _ok(smoke)
    for _, r in ok.iterrows():
        row = frame[(frame["case"] == r["case"]) & (frame["mode"] == r["mode"])].iloc[0]
        assert row[f"{r['backend']}.median_ms"] == pytest.approx(r["median_ms"], rel=1e-5)
        assert row[f"{r['backend']}.peak_mib"] == pytest.approx(
            r["peak_mem_bytes"] / 2**20, rel=1e-5, abs=1e-9
        )


def test_html_is_self_contained_with_embedded_figures(smoke) -> None:
    text = render(build_report(smoke), ReportFormat.HTML, smoke, None, figures=True)
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 4  # latency, speed-up, roofline, memory (smoke is not a sweep)
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    assert not re.search(r'(src|href)="(?!data:)', text)  # nothing fetched from elsewhere
    assert "<b>" in text and text.count("<table>") == 4


# ---------------------------------------------------------------------------------------
# Numbers and the command line


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0"), (0.064712, "0.0647"), (119.47, "119"), (12345.6, "12346"), (1.0, "1.00")],
)
def test_fmt_number(value: float, text: str) -> None:
    assert fmt_number(value) == text


def test_cli_report_to_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.tex"
    assert main(["report", str(SMOKE), "--format", "latex", "--output", str(out)]) == 0
    assert out.read_text().count("\\begin{tabular}") == 4
    assert "written to" in capsys.readouterr().out
    assert main(["report", str(SMOKE), "--format", "csv"]) == 0
    frame = pd.read_csv(StringIO(capsys.readouterr().out))
    assert np.isfinite(frame.filter(like="median_ms").to_numpy(float)).any()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["report", "{empty}"], "holds no results.parquet"),
        (["report", str(SMOKE), "--baseline", "nosuch"], "baseline backend 'nosuch'"),
        (["report", str(SMOKE), "--format", "docx"], "'docx' is not one of"),
    ],
)
def test_cli_report_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    (tmp_path / "empty").mkdir()
    assert main([a.format(empty=tmp_path / "empty") for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("invbench: error: ") and needle in err[0]


def test_health_warnings_are_listed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(RESNET, run)
    rows = pd.read_parquet(run / "results.parquet")
    rows["warnings"] = ""
    rows.loc[(rows["case"] == "layer4") & (rows["backend"] == "dwconv"), "warnings"] = (
        "spread 31% > 10%"
    )
    rows.to_parquet(run / "results.parquet", index=False)
    rs = load_results(run)
    text = to_markdown(build_report(rs))
    section = text.split("## Health warnings", 1)[1].split("##", 1)[0]
    assert section.count("\n- ") == 1
    assert "layer4 (float32, fwd) dwconv: spread 31% > 10%" in section
    assert "## Health warnings" not in to_markdown(build_report(load_results(RESNET)))


def _split_by_mode(tmp_path: Path) -> list[Path]:
    """The smoke fixture as two runs of one machine: its fwd rows and its fwd+bwd rows."""
    rs = load_results(SMOKE)
    dirs = []
    for mode in ("fwd", "fwd+bwd"):
        part = tmp_path / mode.replace("+", "-")
        part.mkdir()
        rs.rows[rs.rows["mode"] == mode].to_parquet(part / "results.parquet")
        rs.samples[rs.samples["mode"] == mode].to_parquet(part / "samples.parquet")
        (part / "meta.json").write_text(json.dumps(rs.meta))
        dirs.append(part)
    return dirs


def test_report_of_several_runs_is_the_report_of_their_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(SMOKE)]) == 0
    whole = capsys.readouterr().out
    assert main(["report", *map(str, _split_by_mode(tmp_path))]) == 0
    combined = capsys.readouterr().out
    assert "results: fwd, fwd-bwd" in combined
    assert combined.replace("results: fwd, fwd-bwd", "results: smoke-a") == whole


def test_report_refuses_overlapping_runs_and_other_machines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fwd, bwd = _split_by_mode(tmp_path)
    assert main(["report", str(fwd), str(fwd)]) == 2
    assert "is in both" in capsys.readouterr().err
    meta = json.loads((bwd / "meta.json").read_text())
    (bwd / "meta.json").write_text(json.dumps(dict(meta, host="another-host")))
    assert main(["report", str(fwd), str(bwd)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another machine" in err[0]
