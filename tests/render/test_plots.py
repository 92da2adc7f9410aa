"""Figures from the committed fixture result sets: files, pixels, and plotted data."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from invbench.cli.app import main
from invbench.core.choices import FigureKind, Format, Width
from invbench.measure.ceiling_record import ceilings_for, datasheet_ceilings, measured_ceilings
from invbench.render.plots import data as D
from invbench.render.plots.make import PlotRequest, make_plots
from invbench.render.plots.style import KNOWN_BACKENDS, MIN_FONT_PT, backend_style
from invbench.storage.results import load_results

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.container import BarContainer, ErrorbarContainer  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from invbench.render.plots import figures as F  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SMOKE_A = FIXTURES / "smoke-a"
SMOKE_B = FIXTURES / "smoke-b"
RESNET = FIXTURES / "resnet-b1"
KERNEL_SWEEP = FIXTURES / "kernel-sweep"
BATCH_SWEEP = FIXTURES / "batch-sweep"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke():
    return load_results(SMOKE_A)


@pytest.fixture(scope="module")
def resnet():
    return load_results(RESNET)


# ---------------------------------------------------------------------------------------
# Files on disk


def test_plot_writes_every_format_and_decodable_files(tmp_path: Path) -> None:
    out = tmp_path / "figs"
    outcome = make_plots(
        PlotRequest(
            results=[SMOKE_A],
            kinds=[FigureKind.LATENCY, FigureKind.ROOFLINE],
            formats=[Format.PNG, Format.PDF, Format.SVG],
            out=out,
        )
    )
    for stem in ("latency", "roofline"):
        png = out / f"{stem}.png"
        pdf = out / f"{stem}.pdf"
        svg = out / f"{stem}.svg"
        assert {png, pdf, svg} <= set(outcome.files)
        image = matplotlib.image.imread(png)
        assert image.shape[1] == round(3.5 * 300)  # 3.5 in at 300 dpi: the printed width
        assert float(np.var(image[..., :3])) > 1e-3  # not blank
        raw_pdf = pdf.read_bytes()
        assert raw_pdf.startswith(b"%PDF")
        assert b"/Type3" not in raw_pdf  # TrueType (fonttype 42): text stays text
        raw_svg = svg.read_text()
        assert raw_svg.lstrip().startswith(("<?xml", "<svg"))
        assert "<text" in raw_svg  # svg.fonttype none: labels are <text>, not paths
        caption = (out / f"{stem}.txt").read_text()
        meta = json.loads((SMOKE_A / "meta.json").read_text())
        assert meta["git"]["short_commit"] in caption
        assert "float32" in caption and "fwd" in caption and "CPU" in caption
        assert not pd.read_csv(out / f"{stem}.csv").empty


def test_vector_files_are_reproducible(tmp_path: Path) -> None:
    for name in ("one", "two"):
        make_plots(
            PlotRequest(
                results=[SMOKE_A],
                kinds=[FigureKind.SPEEDUP],
                formats=[Format.PDF, Format.SVG],
                out=tmp_path / name,
            )
        )
    for fmt in ("pdf", "svg"):
        first = (tmp_path / "one" / f"speedup.{fmt}").read_bytes()
        assert first == (tmp_path / "two" / f"speedup.{fmt}").read_bytes(), fmt
        assert b"CreationDate" not in first and b"<dc:date>" not in first, fmt
    svg = (tmp_path / "one" / "speedup.svg").read_text()
    referenced = set(re.findall(r"url\(#([^)]+)\)", svg))
    assert referenced and referenced <= set(re.findall(r'id="([^"]+)"', svg))


def test_default_output_is_plots_inside_the_results(tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(KERNEL_SWEEP, copy)
    outcome = make_plots(PlotRequest(results=[copy]))
    assert outcome.out_dir == copy / "plots"
    names = {p.name for p in outcome.files}
    # a kernel sweep gets every single-run kind, the sweep included; compare needs two runs
    for stem in ("latency", "speedup", "roofline", "memory", "sweep"):
        assert f"{stem}.png" in names
    assert not any(n.startswith("compare") for n in names)


# ---------------------------------------------------------------------------------------
# Plotted data == the table it came from


def _bars(ax) -> dict[str, BarContainer]:
    return {c.get_label(): c for c in ax.containers if isinstance(c, BarContainer)}


def _tick_labels(ax, axis: str = "x") -> list[str]:
    labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    return [t.get_text().replace("\n", "") for t in labels]


def _bar_values(ax, backend: str) -> dict[str, float]:
    """label -> top of that backend's bar (bars may start at 1, e.g. speed-ups)."""
    container = _bars(ax)[backend]
    ticks = _tick_labels(ax)
    out = {}
    for rect in container.patches:
        centre = rect.get_x() + rect.get_width() / 2
        out[ticks[round(centre)]] = rect.get_y() + rect.get_height()
    return out


def _bar_whiskers(ax, backend: str) -> list[tuple[float, float]]:
    err = _bars(ax)[backend].errorbar
    assert err is not None
    segments = err.lines[2][0].get_segments()
    return [(float(s[:, 1].min()), float(s[:, 1].max())) for s in segments]


def _panel_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def test_latency_bars_match_table(smoke) -> None:
    result = F.latency_figure(smoke, Width.SINGLE)
    table = result.table
    pairs = D.panel_order(table)
    axes = _panel_axes(result.figure)
    assert len(axes) == len(pairs) == 2  # fwd and fwd+bwd
    rows = smoke.rows[smoke.rows["status"] == "ok"]
    for ax, (dtype, mode) in zip(axes, pairs, strict=True):
        sub = rows[(rows["dtype"] == dtype) & (rows["mode"] == mode)]
        assert set(_bars(ax)) == set(sub["backend"])
        for backend, group in sub.groupby("backend"):
            plotted = _bar_values(ax, backend)
            expected = dict(zip(group["case"], group["median_ms"], strict=True))
            assert plotted.keys() == expected.keys()
            for case, ms in expected.items():
                assert plotted[case] == pytest.approx(ms, rel=1e-9)
            whiskers = sorted(_bar_whiskers(ax, backend))
            want = sorted(zip(group["p20_ms"], group["p80_ms"], strict=True))
            np.testing.assert_allclose(whiskers, want, rtol=1e-9)
        assert ax.get_ylabel().startswith("latency (ms")


def test_speedup_bars_match_rows(smoke) -> None:
    result = F.speedup_figure(smoke, Width.SINGLE, "unfold")
    rows = smoke.rows[smoke.rows["status"] == "ok"]
    for ax, (dtype, mode) in zip(
        _panel_axes(result.figure), D.panel_order(result.table), strict=True
    ):
        sub = rows[(rows["dtype"] == dtype) & (rows["mode"] == mode)]
        base = sub[sub["backend"] == "unfold"].set_index("case")["median_ms"]
        assert "unfold" not in _bars(ax)
        for backend, group in sub[sub["backend"] != "unfold"].groupby("backend"):
            plotted = _bar_values(ax, backend)
            for case, ms in zip(group["case"], group["median_ms"], strict=True):
                assert plotted[case] == pytest.approx(base[case] / ms, rel=1e-9)
        assert ax.get_yscale() == "log"
        ones = [line for line in ax.lines if list(line.get_ydata()) == [1.0, 1.0]]
        assert ones, "the 1x line is missing"
    # bootstrap CIs exist where both rows kept samples, and bracket a positive range
    finite = result.table.dropna(subset=["ci_low", "ci_high"])
    assert not finite.empty
    assert (finite["ci_low"] <= finite["ci_high"]).all() and (finite["ci_low"] > 0).all()


def test_roofline_points_match_rows(resnet) -> None:
    result = F.roofline_figure(resnet, Width.SINGLE)
    (ax,) = _panel_axes(result.figure)
    scale = float(result.table["perf_scale"].iloc[0])
    rows = resnet.rows[resnet.rows["status"] == "ok"]
    collections = {c.get_label(): c for c in ax.collections}
    assert set(collections) == set(rows["backend"])
    for backend, group in rows.groupby("backend"):
        points = np.asarray(collections[backend].get_offsets())
        # intensity from the analytic counts; throughput cross-checked with the runner's column
        want_x = group["flops"].to_numpy(float) / group["bytes"].to_numpy(float)
        want_y = group["tflops"].to_numpy(float) * 1e12 / scale
        np.testing.assert_allclose(np.sort(points[:, 0]), np.sort(want_x), rtol=1e-9)
        np.testing.assert_allclose(np.sort(points[:, 1]), np.sort(want_y), rtol=1e-6)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert "FLOP/byte" in ax.get_xlabel() and "FLOP/s" in ax.get_ylabel()
    note = ax.get_legend()
    assert note is not None  # a CPU run: no roofs invented, and the figure says so
    assert [t.get_text() for t in note.get_texts()] == ["no measured ceilings in this run"]
    assert not [line for line in ax.lines if line.get_label().endswith(")")]


def _with_meta(tmp_path: Path, src: Path, **changes) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    meta = json.loads((dst / "meta.json").read_text())
    meta.update(changes)
    (dst / "meta.json").write_text(json.dumps(meta))
    return dst


def test_roofline_draws_measured_ceilings(tmp_path: Path) -> None:
    bw_gbps, fp32_tflops = 2.5, 0.04  # small enough to sit near the CPU points
    path = _with_meta(
        tmp_path,
        RESNET,
        ceilings={
            "copy": {"gbps": bw_gbps},
            "matmul": [{"tflops": fp32_tflops, "dtype": "float32"}],
        },
    )
    result = F.roofline_figure(load_results(path), Width.SINGLE)
    (ax,) = _panel_axes(result.figure)
    scale = float(result.table["perf_scale"].iloc[0])
    roofs = {line.get_label(): line for line in ax.lines}
    memory = next(line for label, line in roofs.items() if "B/s" in label)
    compute = next(line for label, line in roofs.items() if "FLOP/s" in label)
    assert "measured" in memory.get_label() and "measured" in compute.get_label()
    x, y = np.asarray(memory.get_xdata()), np.asarray(memory.get_ydata())
    np.testing.assert_allclose(y, x * bw_gbps * 1e9 / scale, rtol=1e-9)
    ridge = fp32_tflops * 1e12 / (bw_gbps * 1e9)  # FLOP/byte where the roofs meet
    assert x.max() == pytest.approx(ridge)
    cx, cy = np.asarray(compute.get_xdata()), np.asarray(compute.get_ydata())
    assert cx[0] == pytest.approx(ridge)
    np.testing.assert_allclose(cy, fp32_tflops * 1e12 / scale, rtol=1e-9)


def test_roofline_datasheet_ceilings_are_marked(tmp_path: Path) -> None:
    path = _with_meta(tmp_path, RESNET, cuda_devices=[{"name": "NVIDIA H100 80GB HBM3"}])
    rows = pd.read_parquet(path / "results.parquet")
    rows["device"] = "cuda"
    rows.to_parquet(path / "results.parquet", index=False)
    samples = pd.read_parquet(path / "samples.parquet")
    samples["device"] = "cuda"
    samples.to_parquet(path / "samples.parquet", index=False)
    result = F.roofline_figure(load_results(path), Width.SINGLE)
    (ax,) = _panel_axes(result.figure)
    labels = [line.get_label() for line in ax.lines]
    assert any("3.35 TB/s (datasheet" in label for label in labels)
    assert any("datasheet" in line for line in result.details)


def test_ceiling_reader_reads_the_record_run_writes() -> None:
    # Only the shape measure_ceilings writes is read; anything else is no record (no guessing).
    assert measured_ceilings({"ceilings": {"bandwidth_gbps": 3000.0}}, "cuda") is None
    # the record `invbench run` writes: copy bandwidth, and a list of matmuls by dtype
    written = measured_ceilings(
        {
            "ceilings": {
                "device": "cuda",
                "copy": {"gbps": 2950.0, "bytes_moved": 2147483648, "median_ms": 0.73},
                "matmul": [
                    {"tflops": 48.0, "n": 8192, "dtype": "float32"},
                    {"tflops": 610.0, "n": 8192, "dtype": "bfloat16"},
                    {"dtype": "torch.float16", "error": "RuntimeError: out of memory"},
                ],
            }
        },
        "cuda",
    )
    assert written is not None and written.bandwidth is not None
    assert written.bandwidth.value == 2950.0
    assert written.compute_for("float32").value == pytest.approx(48e12)  # type: ignore[union-attr]
    assert written.compute_for("bfloat16").value == pytest.approx(610e12)  # type: ignore[union-attr]
    assert written.compute_for("float16") is None
    assert measured_ceilings({}, "cuda") is None
    assert measured_ceilings({"ceilings": {"copy": None, "copy_error": "OOM"}}, "cuda") is None
    assert ceilings_for({"cpu": "x"}, "cpu") is None
    h100 = datasheet_ceilings("NVIDIA H100 PCIe")
    assert h100 is not None and h100.bandwidth is not None and h100.bandwidth.value == 2000.0
    assert datasheet_ceilings("Some Unknown GPU") is None
    assert datasheet_ceilings("NVIDIA L40S") is None  # not an L4
    l4 = datasheet_ceilings("NVIDIA L4")
    assert l4 is not None and l4.bandwidth is not None and l4.bandwidth.value == 300.0
    a100 = datasheet_ceilings("NVIDIA A100-SXM4-80GB")
    assert a100 is not None and a100.bandwidth is not None and a100.bandwidth.value == 2039.0
    v100 = datasheet_ceilings("Tesla V100-SXM2-32GB")
    assert v100 is not None and v100.compute_for("bfloat16") is None  # no BF16 tensor cores


def test_memory_bars_match_rows(resnet) -> None:
    result = F.memory_figure(resnet, Width.SINGLE)
    (ax,) = _panel_axes(result.figure)
    rows = resnet.rows[resnet.rows["status"] == "ok"]
    for backend, group in rows.groupby("backend"):
        resolved = group[group["peak_mem_bytes"] >= 64 * 1024]  # rss-hwm's resolution
        plotted = _bar_values(ax, backend)
        assert set(plotted) == set(resolved["case"])
        for case, nbytes in zip(resolved["case"], resolved["peak_mem_bytes"], strict=True):
            assert plotted[case] == pytest.approx(nbytes / 2**20, rel=1e-9)
    assert ax.get_yscale() == "log" and "MiB" in ax.get_ylabel()
    # the unfold blow-up is visible: unfold needs the most memory on the K=7 layers
    unfold = _bar_values(ax, "unfold")
    dw = _bar_values(ax, "dwconv")
    assert unfold["layer1"] > 5 * dw["layer1"]


def test_memory_below_the_methods_resolution_is_said_not_plotted_as_zero(smoke) -> None:
    result = F.memory_figure(smoke, Width.SINGLE)
    ok = smoke.rows[smoke.rows["status"] == "ok"]
    assert set(ok["mem_method"]) == {"rss-hwm"}
    below = ok[ok["peak_mem_bytes"] < 64 * 1024]
    assert (below["peak_mem_bytes"] == 0).any() and len(below) < len(ok)
    texts = [t.get_text() for ax in _panel_axes(result.figure) for t in ax.texts]
    assert "0" not in texts
    assert texts.count("< 64.0 KiB") == len(below)
    for ax in _panel_axes(result.figure):
        for backend in _bars(ax):
            assert min(_bar_values(ax, backend).values()) >= 64 / 1024  # MiB
    assert any("unknown, not zero" in line for line in result.details)


def test_memory_with_every_peak_below_resolution_is_a_plot_error(tmp_path: Path) -> None:
    rs = load_results(SMOKE_A)
    rows = rs.rows.assign(
        peak_mem_bytes=rs.rows["peak_mem_bytes"].where(rs.rows["status"] != "ok", 0)
    )
    with pytest.raises(D.PlotError, match="below what rss-hwm can resolve"):
        F.memory_figure(replace(rs, rows=rows), Width.SINGLE)


def test_sweep_field_detection(smoke, resnet) -> None:
    assert D.sweep_field(load_results(KERNEL_SWEEP)) == "kernel_size"
    assert D.sweep_field(load_results(BATCH_SWEEP)) == "batch"
    assert D.sweep_field(resnet) is None
    assert D.sweep_field(smoke) is None


@pytest.mark.parametrize(("path", "field"), [(KERNEL_SWEEP, "kernel_size"), (BATCH_SWEEP, "batch")])
def test_sweep_lines_match_rows(path: Path, field: str) -> None:
    rs = load_results(path)
    result = F.sweep_figure(rs, Width.SINGLE)
    (ax,) = _panel_axes(result.figure)
    lines = {c.get_label(): c for c in ax.containers if isinstance(c, ErrorbarContainer)}
    rows = rs.rows[rs.rows["status"] == "ok"]
    assert set(lines) == set(rows["backend"])
    for backend, group in rows.groupby("backend"):
        data_line = lines[backend].lines[0]
        group = group.sort_values(field)
        np.testing.assert_array_equal(data_line.get_xdata(), group[field].to_numpy(float))
        np.testing.assert_allclose(data_line.get_ydata(), group["median_ms"], rtol=1e-9)
        assert data_line.get_color() == backend_style(backend).color
        assert data_line.get_marker() == backend_style(backend).marker
    assert ax.get_xlabel().startswith(D.FIELD_AXIS_LABEL[field])
    if field == "batch":
        assert ax.get_xscale() == "log"


def test_compare_points_match_rows() -> None:
    a, b = load_results(SMOKE_A), load_results(SMOKE_B)
    result = F.compare_figure(a, b, Width.SINGLE)
    key = ["case", "backend", "dtype", "mode"]
    ra = a.rows.set_index(key)["median_ms"]
    rb = b.rows.set_index(key)["median_ms"]
    seen = 0
    for ax, (dtype, mode) in zip(
        _panel_axes(result.figure), D.panel_order(result.table), strict=True
    ):
        ticks = dict(zip(ax.get_yticks(), _tick_labels(ax, "y"), strict=True))
        for c in ax.containers:
            if not isinstance(c, ErrorbarContainer):
                continue
            backend = c.get_label()
            for x, y in zip(c.lines[0].get_xdata(), c.lines[0].get_ydata(), strict=True):
                case, shown_backend = ticks[y].split(" · ")
                assert shown_backend == backend
                k = (case, backend, dtype, mode)
                assert x == pytest.approx(rb[k] / ra[k], rel=1e-9)
                seen += 1
        assert ax.get_xscale() == "log"
    assert seen == len(result.table) == len(a.rows)


def test_bootstrap_ratio_ci_covers_a_known_ratio() -> None:
    rng = np.random.default_rng(1)
    num = 2.0 + rng.normal(0, 0.05, 200)
    den = 1.0 + rng.normal(0, 0.025, 200)
    lo, hi = D.bootstrap_ratio_ci(num, den)
    assert lo < 2.0 < hi and hi - lo < 0.1
    assert all(math.isnan(v) for v in D.bootstrap_ratio_ci(np.array([1.0]), den))


# ---------------------------------------------------------------------------------------
# Style


def test_backend_styles_fixed_distinct_and_stable() -> None:
    colours = [s.color for s in KNOWN_BACKENDS.values()]
    markers = [s.marker for s in KNOWN_BACKENDS.values()]
    assert len(set(colours)) == len(colours) and len(set(markers)) == len(markers)
    for name in ("unfold", "compile", "conv3x3", "dwconv", "triton", "cuda_ext", "cuda_naive"):
        assert name in KNOWN_BACKENDS
    unknown = backend_style("my_new_kernel")
    assert unknown == backend_style("my_new_kernel")
    assert unknown.color not in colours
    # the same in a fresh interpreter (no per-process hash randomisation): see
    # test_fresh_interpreter, which also checks that matplotlib is not imported


def test_bar_colours_follow_the_backend(resnet) -> None:
    result = F.latency_figure(resnet, Width.SINGLE)
    for ax in _panel_axes(result.figure):
        for backend, container in _bars(ax).items():
            want = matplotlib.colors.to_rgba(backend_style(backend).color)
            for rect in container.patches:
                assert rect.get_facecolor() == pytest.approx(want)


def _every_kind(width: Width) -> dict[str, F.FigureResult]:
    resnet, smoke_b = load_results(RESNET), load_results(SMOKE_B)
    return {
        "latency": F.latency_figure(resnet, width),
        "speedup": F.speedup_figure(resnet, width, "unfold"),
        "roofline": F.roofline_figure(resnet, width),
        "memory": F.memory_figure(resnet, width),
        "sweep": F.sweep_figure(load_results(KERNEL_SWEEP), width),
        "compare": F.compare_figure(load_results(SMOKE_A), smoke_b, width),
    }


UNITS = {
    "latency": ("(ms", None),
    "speedup": ("(×", None),
    "roofline": ("FLOP/s", "FLOP/byte"),
    "memory": ("(MiB", None),
    "sweep": ("(ms", "kernel size K"),
    "compare": (None, "(×"),
}


@pytest.mark.parametrize("width", [Width.SINGLE, Width.DOUBLE])
def test_every_kind_has_print_size_readable_text_and_units(width: Width) -> None:
    for kind, result in _every_kind(width).items():
        fig = result.figure
        assert fig.get_size_inches()[0] == pytest.approx(width.inches), kind
        fig.canvas.draw()
        sizes = [
            t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()
        ]
        assert sizes and min(sizes) >= MIN_FONT_PT, kind
        y_unit, x_unit = UNITS[kind]
        axes = _panel_axes(fig)
        for ax in axes:
            if y_unit:
                assert y_unit in ax.get_ylabel(), (kind, ax.get_ylabel())
        if x_unit:  # on the bottom panel at least (stacked panels share the x quantity)
            assert x_unit in axes[-1].get_xlabel(), (kind, axes[-1].get_xlabel())
        # the caption line is on the figure (wrapped between its parts where needed)
        words = " ".join(t.get_text() for t in fig.texts).replace("·", " ").split()
        assert result.caption.replace("·", " ").split() == words, kind


def _corners(text: Text, renderer) -> np.ndarray:
    """The four corners (display px) of a text's rotated box."""
    angle = text.get_rotation()
    text.set_rotation(0)
    box = text.get_window_extent(renderer)
    text.set_rotation(angle)
    rotated = text.get_window_extent(renderer)
    w, h = box.width, box.height
    t = math.radians(angle)
    local = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=float)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    pts = local @ rot.T
    # place the rotated rectangle inside its axis-aligned extent
    pts -= pts.min(axis=0)
    return pts + np.array([rotated.x0, rotated.y0])


def _polygons_intersect(a: np.ndarray, b: np.ndarray) -> bool:
    for poly in (a, b):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            normal = np.array([-edge[1], edge[0]])
            pa, pb = a @ normal, b @ normal
            if pa.max() <= pb.min() or pb.max() <= pa.min():
                return False
    return True


@pytest.mark.parametrize("kind", ["latency", "speedup", "memory"])
def test_category_tick_labels_do_not_overlap(resnet, kind: str) -> None:
    make = {
        "latency": lambda: F.latency_figure(resnet, Width.SINGLE),
        "speedup": lambda: F.speedup_figure(resnet, Width.SINGLE, "unfold"),
        "memory": lambda: F.memory_figure(resnet, Width.SINGLE),
    }[kind]
    fig = make().figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in _panel_axes(fig):
        labels = [t for t in ax.get_xticklabels() if t.get_text()]
        assert len(labels) == 8  # every resnet layer is labelled
        polys = [_corners(t, renderer) for t in labels]
        for i in range(len(polys) - 1):
            assert not _polygons_intersect(polys[i], polys[i + 1]), (
                labels[i].get_text(),
                labels[i + 1].get_text(),
            )


def test_fresh_interpreter() -> None:
    """In a new process: importing invbench (CLI and report included) leaves matplotlib
    unimported, and an unknown backend gets the same style as in this process."""
    code = (
        "import sys, invbench, invbench.cli.app, invbench.render.report\n"
        "print('matplotlib' in sys.modules)\n"
        "from invbench.render.plots.style import backend_style as s\n"
        "print(s('my_new_kernel').color, s('my_new_kernel').marker)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    first, second = out.stdout.strip().splitlines()
    assert first == "False"
    unknown = backend_style("my_new_kernel")
    assert second.split() == [unknown.color, unknown.marker]


# ---------------------------------------------------------------------------------------
# The command line


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("invbench: error: ")
    return err[0]


def test_cli_plot_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p"
    rc = main(
        [
            "plot", str(SMOKE_A), str(SMOKE_B), "--kind", "compare",
            "--format", "svg", "--format", "png", "--width", "double", "--out", str(out),
        ]
    )  # fmt: skip
    assert rc == 0
    assert (out / "compare.svg").exists() and (out / "compare.png").exists()
    width_px = matplotlib.image.imread(out / "compare.png").shape[1]
    assert width_px == round(7.0 * 300)
    assert "written to" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["plot", "{empty}"], "holds no results.parquet"),
        (["plot", str(SMOKE_A), "--baseline", "nosuch"], "baseline backend 'nosuch'"),
        (["plot", str(SMOKE_A), "--kind", "pie"], "'pie' is not one of"),
        (["plot", str(SMOKE_A), "--kind", "compare"], "needs two results directories"),
        (["plot", str(RESNET), "--kind", "sweep"], "is not a sweep"),
        (["plot", "{missing}"], "is not a directory"),
        (["plot", str(SMOKE_A), "--mode", "bwd"], "'bwd' is not one of"),
        (["plot", str(SMOKE_A), "--dtype", "bfloat16"], "has no bfloat16 rows"),
    ],
)
def test_cli_plot_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    (tmp_path / "empty").mkdir()
    args = [a.format(empty=tmp_path / "empty", missing=tmp_path / "missing") for a in args]
    assert main(args) == 2
    assert needle in _one_error_line(capsys)


def test_backends_that_never_ran_are_named_in_the_caption(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(RESNET, run)
    rows = pd.read_parquet(run / "results.parquet")
    extra = rows[rows["backend"] == "dwconv"].copy()
    extra["backend"] = "triton"
    extra["status"] = "skipped"
    extra["median_ms"] = None
    extra["reason"] = "triton needs a CUDA device"
    pd.concat([rows, extra]).to_parquet(run / "results.parquet", index=False)
    result = F.latency_figure(load_results(run), Width.SINGLE)
    assert "triton" not in _bars(_panel_axes(result.figure)[0])
    assert any(
        line.startswith("not shown: triton") and "needs a CUDA device" in line
        for line in result.details
    )


def test_rows_that_did_not_run_are_marked_in_place(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(RESNET, run)
    rows = pd.read_parquet(run / "results.parquet")
    hit = (rows["backend"] == "unfold") & (rows["case"] == "layer1")
    rows.loc[hit, ["status", "median_ms", "p20_ms", "p80_ms"]] = ["oom", None, None, None]
    rows.to_parquet(run / "results.parquet", index=False)
    rs = load_results(run)
    (lat_ax,) = _panel_axes(F.latency_figure(rs, Width.SINGLE).figure)
    assert "layer1" in _tick_labels(lat_ax) and "layer1" not in _bar_values(lat_ax, "unfold")
    assert [t.get_text() for t in lat_ax.texts] == ["OOM"]
    (sp_ax,) = _panel_axes(F.speedup_figure(rs, Width.SINGLE, "unfold").figure)
    assert "layer1" in _tick_labels(sp_ax)
    assert "layer1" not in _bar_values(sp_ax, "dwconv")
    assert [t.get_text() for t in sp_ax.texts] == ["unfold: OOM"]


def test_dtype_and_mode_filters_and_no_caption(tmp_path: Path) -> None:
    from invbench.render.plots.make import build_figures, select

    rs = select(load_results(SMOKE_A), (), ("fwd+bwd",))
    assert set(rs.rows["mode"]) == {"fwd+bwd"} and set(rs.samples["mode"]) == {"fwd+bwd"}
    request = PlotRequest(results=[SMOKE_A], kinds=[FigureKind.LATENCY], caption=False)
    (fig,), _ = build_figures(request, [rs])
    (ax,) = _panel_axes(fig.figure)  # one panel left, so no panel title either
    assert ax.get_title() == ""
    assert not fig.figure.texts  # no caption line on the figure
    assert set(fig.table["mode"]) == {"fwd+bwd"}


def test_cli_plot_bad_input_subprocess(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "invbench", "plot", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "holds no results.parquet" in lines[0]
    assert "Traceback" not in proc.stderr


def test_run_with_plot_makes_figures(tmp_path: Path) -> None:
    out = tmp_path / "run"
    rc = main(
        [
            "run", "--suite", "smoke", "--device", "cpu", "--backend", "dwconv",
            "--samples", "3", "--mode", "fwd", "--out", str(out), "--plot",
        ]
    )  # fmt: skip
    assert rc == 0
    assert (out / "plots" / "latency.png").exists()
    assert (out / "plots" / "roofline.png").exists()


def _model_run(directory: Path) -> Path:
    """A model-level run as rednet-vs-resnet makes it on a CPU: depth 26, batches 1 and 2."""
    from tests.compare_helpers import row, write_dir

    rng = np.random.default_rng(3)
    entries = []
    for batch in (1, 2):
        for backend, model, ms in (("unfold", "rednet-26", 90.0), ("conv3x3", "resnet-26", 60.0)):
            samples = list(ms * batch * rng.lognormal(0.0, 0.02, 5))
            entries.append(
                (
                    row(
                        backend,
                        suite="rednet-vs-resnet",
                        case=f"d26/b{batch}",
                        batch=batch,
                        channels=3,
                        height=64,
                        width=64,
                        level="model",
                        model=model,
                        median_ms=float(np.median(samples)),
                        p20_ms=float(np.quantile(samples, 0.2)),
                        p80_ms=float(np.quantile(samples, 0.8)),
                        n_samples=5,
                        peak_mem_bytes=(8 if backend == "unfold" else 3) * 2**20 * batch,
                        mem_method="rss-hwm",
                        images_per_s=batch / np.median(samples) * 1e3,
                    ),
                    samples,
                )
            )
    return write_dir(directory, entries)


def test_model_level_run_makes_the_figures_that_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _model_run(tmp_path / "models")
    assert main(["plot", str(run), "--out", str(tmp_path / "figs")]) == 0
    err = capsys.readouterr().err
    assert "roofline skipped" in err and "analytic flops" in err
    made = sorted(p.name for p in (tmp_path / "figs").glob("*.png"))
    assert made == ["latency.png", "memory.png", "speedup.png", "sweep.png"]
    # asked for explicitly, a figure that cannot be made is still an error
    assert main(["plot", str(run), "--kind", "roofline", "--out", str(tmp_path / "r")]) == 2


def test_model_level_figures_name_the_networks(tmp_path: Path) -> None:
    rs = load_results(_model_run(tmp_path / "models"))
    for make in (F.latency_figure, F.memory_figure):
        fig = make(rs, Width.SINGLE).figure
        legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
        assert legend_texts == ["RedNet-26 (unfold)", "ResNet-26 (conv3x3)"]
        for ax in _panel_axes(fig):
            assert "layer" not in ax.get_xlabel() and "network" in ax.get_xlabel()
    speedup = F.speedup_figure(rs, Width.SINGLE, "unfold").figure
    assert [t.get_text() for t in speedup.legends[0].get_texts()] == ["ResNet-26 (conv3x3)"]
    assert "over RedNet-26 (unfold)" in _panel_axes(speedup)[0].get_ylabel()
    # op-level figures keep backend names and the layer axis
    smoke_fig = F.latency_figure(load_results(SMOKE_A), Width.SINGLE).figure
    assert "unfold" in [t.get_text() for t in smoke_fig.legends[0].get_texts()]
    assert _panel_axes(smoke_fig)[0].get_xlabel() == "layer (case)"


def test_run_details_leave_out_rows_that_did_not_run() -> None:
    from invbench.render.plots.caption import caption_details

    rs = load_results(SMOKE_A)
    skipped = rs.rows.iloc[:1].assign(
        backend="triton", status="skipped", cache_mode="", timer="", n_samples=0
    )
    rows = pd.concat([rs.rows, skipped], ignore_index=True)
    details = caption_details(replace(rs, rows=rows))
    assert "cache mode: hot" in details and "timer: perf_counter" in details
    ok = rs.rows["n_samples"]
    assert f"samples per row: {ok.min()} to {ok.max()}" in details
