"""Results of two devices: report and plot show the device as a dimension, never mixing rows.

No two GPUs are at hand, so the two result sets are one CPU run (the smoke-a fixture)
copied twice, with its host and device fields relabelled to stand for two GPU models;
on the second "GPU" every dwconv row is made twice as fast, so a row that took its
numbers from the wrong device would show.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from invbench.cli.app import main
from invbench.render.plots.devices import by_device
from invbench.storage.results import combine_results, load_results
from tests.render.test_report import parse_markdown_tables

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "smoke-a"
GPUS = {"a100": "NVIDIA A100-SXM4-80GB", "h100": "NVIDIA H100 80GB HBM3"}
FASTER = "dwconv"  # twice as fast on the second device


def _relabel(tmp_path: Path, name: str, speed: float) -> Path:
    out = tmp_path / name
    out.mkdir()
    rows = pd.read_parquet(FIXTURE / "results.parquet")
    samples = pd.read_parquet(FIXTURE / "samples.parquet")
    rows["host"] = f"{name}-node"
    rows["device_name"] = GPUS[name]
    rows["device_uuid"] = f"GPU-{name}"
    faster = rows["backend"] == FASTER
    for col in ("median_ms", "p20_ms", "p80_ms", "min_ms", "mean_ms", "ci_low_ms", "ci_high_ms"):
        rows.loc[faster, col] = rows.loc[faster, col] / speed
    samples.loc[samples["backend"] == FASTER, "ms"] /= speed
    rows.to_parquet(out / "results.parquet")
    samples.to_parquet(out / "samples.parquet")
    meta = json.loads((FIXTURE / "meta.json").read_text())
    meta.update(schema_version=2, host=f"{name}-node")
    (out / "meta.json").write_text(json.dumps(meta))
    return out


@pytest.fixture
def two_gpus(tmp_path: Path) -> tuple[Path, Path]:
    return _relabel(tmp_path, "a100", 1.0), _relabel(tmp_path, "h100", 2.0)


def test_runs_of_two_devices_combine_and_split_back(two_gpus: tuple[Path, Path]) -> None:
    a, b = two_gpus
    rs = combine_results([load_results(a), load_results(b)])
    parts = dict(by_device(rs))
    assert list(parts) == [GPUS["a100"], GPUS["h100"]]
    for name, path in zip(("a100", "h100"), two_gpus, strict=True):
        part, alone = parts[GPUS[name]], load_results(path)
        assert len(part.rows) == len(alone.rows)
        assert len(part.samples) == len(alone.samples)  # each sample went with its device
        assert part.samples["ms"].sum() == pytest.approx(alone.samples["ms"].sum())


def test_report_has_a_device_column(
    two_gpus: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", *map(str, two_gpus)]) == 0
    text = capsys.readouterr().out
    tables = parse_markdown_tables(text)
    speedup = next(t for title, t in tables.items() if title.startswith("Speed-up"))
    assert list(speedup.columns[:4]) == ["case", "device", "dtype", "mode"]
    assert len(speedup) == 2 * 2 * 2  # cases x devices x modes: no row mixes devices
    rows = pd.read_parquet(FIXTURE / "results.parquet").set_index(["case", "mode", "backend"])
    for _, r in speedup.iterrows():
        base = rows.loc[(r["case"], r["mode"], "unfold"), "median_ms"]
        mine = rows.loc[(r["case"], r["mode"], FASTER), "median_ms"]
        speed = 2.0 if r["device"] == GPUS["h100"] else 1.0
        shown = float(r[f"{FASTER} speed-up (x)"].strip("*"))
        assert shown == pytest.approx(base / mine * speed, rel=0.01)
    assert f"{GPUS['a100']} vs {GPUS['h100']}" in text  # the caption names both


def test_csv_report_keeps_the_device(two_gpus: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "report.csv"
    assert main(["report", *map(str, two_gpus), "--format", "csv", "--output", str(out)]) == 0
    frame = pd.read_csv(out)
    assert set(frame["device"]) == set(GPUS.values())


def test_speedup_figure_faceted_by_device(two_gpus: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "plots"
    args = ["plot", *map(str, two_gpus), "--kind", "speedup", "--out", str(out)]
    assert main(args) == 0
    faceted = pd.read_csv(out / "speedup-by-device.csv")
    assert set(faceted["device"]) == set(GPUS.values())
    mine = faceted[faceted["backend"] == FASTER].set_index(["device", "label", "mode"])["speedup"]
    for (device, label, mode), value in mine.items():
        if device == GPUS["h100"]:
            assert value == pytest.approx(2 * mine[(GPUS["a100"], label, mode)], rel=1e-6)
    assert (out / "speedup-by-device.png").stat().st_size > 0
    # each set's own figures are made too, one device each
    assert {p.name for p in out.glob("*-speedup.png")} == {"a100-speedup.png", "h100-speedup.png"}
    caption = (out / "speedup-by-device.txt").read_text()
    assert re.search(r"A100.* vs .*H100", caption)
