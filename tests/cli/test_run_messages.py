"""What `invbench run` tells its user: the header, an interrupt, and what meta.json records."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from invbench.backends.registry import Registry
from invbench.backends.unfold import UnfoldBackend, unfold_involution
from invbench.cli.app import main
from invbench.core.spec import Geometry


class InterruptOnce(UnfoldBackend):
    """unfold, but Ctrl-C on the second case of the first run (the resumed run finishes)."""

    name = "interrupt-once"
    description = "Ctrl-C on the second case, once"
    armed = True

    def apply(self, x: torch.Tensor, weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
        if geom.channels == 16 and InterruptOnce.armed:  # smoke's second case, k5-s2-d2
            InterruptOnce.armed = False
            raise KeyboardInterrupt
        k, s, p, d = geom.kernel_size, geom.stride, geom.pad, geom.dilation
        return unfold_involution(x, weight, k, s, p, d)


@pytest.fixture
def interrupting(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry()
    registry.register(UnfoldBackend())
    registry.register(InterruptOnce())
    monkeypatch.setattr("invbench.backends.registry.default_registry", lambda: registry)
    InterruptOnce.armed = True


def test_ctrl_c_says_rows_kept_where_and_how_to_resume(
    interrupting: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run dir"
    args = ["run", "--suite", "smoke", "--device", "cpu", "--samples", "3", "--mode", "fwd"]
    assert main([*args, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert len(pd.read_parquet(out / "results.parquet")) == 2  # both backends, first case
    assert f"interrupted: 2 rows kept in {out}; " in err
    assert f"finish the run with: invbench run --resume '{out}'" in err
    assert main(["run", "--resume", str(out)]) == 0  # the command it printed finishes the run
    rows = pd.read_parquet(out / "results.parquet")
    assert len(rows) == 4 and set(rows.status) == {"ok"}


TWO_BATCHES = """
schema_version = 1
level = "layer"
[run]
batches = [1, 2]
dtypes = ["float32"]
modes = ["fwd"]
warmup_ms = 0
[[cases]]
name = "k3"
channels = 8
height = 6
kernel_size = 3
groups = 2
"""


def test_header_names_every_batch_and_cpu_meta_says_hot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "two-batches.toml"
    suite.write_text(TWO_BATCHES)
    out = tmp_path / "run"
    args = ["run", "--suite", str(suite), "--device", "cpu", "--samples", "2"]
    assert main([*args, "--backend", "unfold", "--out", str(out)]) == 0
    assert "(batch 1, 2)" in capsys.readouterr().err
    rows = pd.read_parquet(out / "results.parquet")
    assert sorted(rows.batch) == [1, 2] and set(rows.cache_mode) == {"hot"}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["run"]["cache_mode"] == "hot"  # the CPU times hot whatever --cache says
