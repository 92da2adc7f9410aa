"""Graph mode for real at the layer and model levels (needs a CUDA device)."""

from __future__ import annotations

import pytest
import torch

from invbench.backends.registry import default_registry
from invbench.core.choices import CacheMode
from invbench.core.spec import Case, Dtype, Geometry, Level, Mode
from invbench.core.stats import StopPolicy
from invbench.running.engine import Engine
from invbench.running.plan import RunPlan
from invbench.storage.results import ResultRow

pytestmark = pytest.mark.gpu

CASES = {
    Level.LAYER: Case(
        "t", "layer", Geometry(batch=2, channels=64, height=28, width=28, kernel_size=7, groups=4)
    ),
    Level.MODEL: Case(
        "t", "d26", Geometry(batch=2, channels=3, height=64, width=64, kernel_size=1), depth=26
    ),
}


class Sink:
    def __init__(self) -> None:
        self.rows: list[ResultRow] = []

    def add(self, row: ResultRow, samples_ms: object = ()) -> None:
        self.rows.append(row)


@pytest.mark.parametrize("level", [Level.LAYER, Level.MODEL])
def test_graph_mode_replays_captured_layers_and_networks(level: Level) -> None:
    plan = RunPlan(
        cases=(CASES[level],),
        backends=("unfold", "conv3x3"),
        dtypes=(Dtype.FLOAT32,),
        modes=(Mode.FWD, Mode.FWD_BWD),
        device=torch.device("cuda"),
        policy=StopPolicy(samples=10),
        warmup_ms=5.0,
        cache_mode=CacheMode.GRAPH,
        level=level,
    )
    sink = Sink()
    Engine(plan, default_registry(), sink).run()
    assert len(sink.rows) == 4
    for row in sink.rows:
        assert row.status == "ok", row.reason
        assert row.median_ms is not None and row.median_ms > 0
        if row.mode == "fwd":  # inference captures: eval mode, no autograd
            assert row.cache_mode == "graph", row.warnings
            assert "graph capture failed" not in row.warnings
        elif row.cache_mode != "graph":  # a training step may not capture: then it says so
            assert row.cache_mode == "hot" and "graph capture failed" in row.warnings
    if level is Level.LAYER:
        unfold = [r for r in sink.rows if r.backend == "unfold"]
        assert all(r.gen_ms is not None and r.agg_ms is not None for r in unfold)
