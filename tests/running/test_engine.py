"""One engine at every level: faults, graph mode, interleaved parts, NVTX and isolation."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from invbench.backends.registry import Registry, default_registry
from invbench.cli.app import app
from invbench.core.choices import CacheMode
from invbench.core.spec import Case, Dtype, Geometry, Level, Mode
from invbench.core.stats import StopPolicy, StopReason
from invbench.measure import nvtx
from invbench.running.engine import Engine
from invbench.running.errors import classify, one_line
from invbench.running.plan import RunPlan
from invbench.storage.results import ResultRow, load_results
from tests.measure_backends import TINY, AcceleratorError, LostContextBackend

CPU = torch.device("cpu")
LAYER_CASE = Case(
    "t", "layer", Geometry(batch=1, channels=8, height=8, width=7, kernel_size=3, groups=2)
)
MODEL_CASE = Case(
    "t", "d26", Geometry(batch=1, channels=3, height=16, width=16, kernel_size=1), depth=26
)
CASES = {Level.OP: TINY, Level.LAYER: LAYER_CASE, Level.MODEL: MODEL_CASE}
GOOD = {Level.OP: "unfold", Level.LAYER: "conv3x3", Level.MODEL: "conv3x3"}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Sink:
    def __init__(self) -> None:
        self.rows: list[ResultRow] = []
        self.samples: list[list[float]] = []

    def add(self, row: ResultRow, samples_ms: Sequence[float] = ()) -> None:
        self.rows.append(row)
        self.samples.append(list(samples_ms))


def plan_of(level: Level, backends: Sequence[str], **kw: object) -> RunPlan:
    return RunPlan(
        cases=(CASES[level],),
        backends=tuple(backends),
        dtypes=(Dtype.FLOAT32,),
        modes=(Mode.FWD,),
        device=CPU,
        policy=StopPolicy(samples=3),
        warmup_ms=1.0,
        level=level,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def registered() -> Iterator[Callable[[LostContextBackend], Registry]]:
    """Registers backends in the process-wide registry (layers look theirs up by name)."""
    registry = default_registry()
    names: list[str] = []

    def register(backend: LostContextBackend) -> Registry:
        registry.register(backend)
        names.append(backend.name)
        return registry

    try:
        yield register
    finally:
        for name in names:
            registry.unregister(name)


# -- errors --------------------------------------------------------------------------------


def test_one_line_and_classify() -> None:
    assert one_line(RuntimeError("a\n  b")) == "RuntimeError: a b"
    assert len(one_line(ValueError("x" * 1000))) == len("ValueError: ") + 300
    assert classify(torch.OutOfMemoryError("CUDA out of memory")).value == "oom"
    assert classify(RuntimeError("CUDA error: misaligned address")).value == "crashed"
    assert classify(AcceleratorError("illegal memory access")).value == "crashed"
    assert classify(ValueError("bad shape")).value == "error"


@pytest.mark.parametrize(
    ("level", "phase", "style"),
    [
        (Level.OP, "prepare", "type"),
        (Level.OP, "timing", "message"),
        (Level.LAYER, "prepare", "message"),
        (Level.LAYER, "timing", "type"),
        (Level.MODEL, "prepare", "type"),
        (Level.MODEL, "timing", "message"),
    ],
)
def test_a_cuda_error_is_crashed_at_every_level(
    registered: Callable[[LostContextBackend], Registry], level: Level, phase: str, style: str
) -> None:
    lost = LostContextBackend("lost-context", style=style, armed=phase == "prepare")
    registry = registered(lost)

    def arm_when_timing(text: str) -> None:
        if "timing" in text:
            lost.armed = True

    sink = Sink()
    plan = plan_of(level, [lost.name, GOOD[level]])
    Engine(plan, registry, sink, on_status=arm_when_timing).run()
    rows = {r.backend: r for r in sink.rows}
    row = rows[lost.name]
    assert row.status == "crashed", row.reason
    assert ("AcceleratorError" if style == "type" else "CUDA error") in row.reason
    assert row.reason.startswith("while timing: ") == (phase == "timing")
    assert rows[GOOD[level]].status == "ok"  # the run goes on
    assert {r.level for r in sink.rows} == {level.value}


# -- graph mode ----------------------------------------------------------------------------


class Replay:
    """A fake graph: replays the closure `calls` times."""

    def __init__(self, fn: Callable[[], object], calls: int) -> None:
        self.fn, self.calls = fn, calls
        self.__name__ = getattr(fn, "__name__", "replay")

    def __call__(self) -> None:
        for _ in range(self.calls):
            self.fn()


class FakeTimer:
    """Runs what it is given and reports `per_call_ms` for each call made (a replay: several).

    Records (closure name, n) of every batch, so tests see what was timed in which order.
    """

    method = "fake"
    last_hidden = False
    resolution_ms = 0.0
    busy = None

    def __init__(self, cache_mode: CacheMode, per_call_ms: float = 0.1) -> None:
        self.cache_mode = cache_mode
        self.per_call_ms = per_call_ms
        self.batches: list[tuple[str, int]] = []
        self.last_host_ms: list[float] = []

    def sample(
        self, fn: Callable[[], object], n: int, hide_launch: bool = False, gate: object = None
    ) -> list[float]:
        for _ in range(n):
            fn()
        self.batches.append((getattr(fn, "__name__", "?"), n))
        return [self.per_call_ms * getattr(fn, "calls", 1)] * n

    def synchronize(self) -> None:
        return None


@pytest.mark.parametrize("level", [Level.LAYER, Level.MODEL])
def test_graph_mode_captures_the_closures_at_the_layer_and_model_levels(level: Level) -> None:
    captured: list[tuple[str, int]] = []

    def capture(fn: Callable[[], object], calls: int) -> Callable[[], object]:
        captured.append((getattr(fn, "__name__", "?"), calls))
        return Replay(fn, calls)

    registry = default_registry()
    backends = ["unfold", "conv3x3"]
    sink = Sink()
    timer = FakeTimer(CacheMode.GRAPH)
    plan = plan_of(level, backends, cache_mode=CacheMode.GRAPH)
    Engine(plan, registry, sink, timer=timer, capture=capture).run()
    assert [r.status for r in sink.rows] == ["ok", "ok"], [r.reason for r in sink.rows]
    calls = 5  # graph_calls(0.1 ms): about 0.5 ms of work per replay
    for row in sink.rows:
        assert (row.cache_mode, row.calls_per_sample) == ("graph", calls)
        assert row.median_ms == pytest.approx(0.1)  # samples are per call, not per replay
    parts = 3 if level is Level.LAYER else 1  # the layer's gen and agg are captured too
    assert len(captured) == parts + 1 and {c for _, c in captured} == {calls}
    if level is Level.LAYER:
        unfold = sink.rows[0]
        assert unfold.gen_ms == pytest.approx(0.1) and unfold.agg_ms == pytest.approx(0.1)


def test_a_failed_capture_is_measured_hot_and_says_so() -> None:
    def capture(fn: Callable[[], object], calls: int) -> Callable[[], object]:
        if getattr(fn, "__name__", "") == "gen":
            raise RuntimeError("operation not permitted when stream is capturing")
        return Replay(fn, calls)

    sink = Sink()
    plan = plan_of(Level.LAYER, ["unfold"], cache_mode=CacheMode.GRAPH)
    timer = FakeTimer(CacheMode.GRAPH)
    Engine(plan, default_registry(), sink, timer=timer, capture=capture).run()
    (row,) = sink.rows
    assert row.status == "ok" and row.cache_mode == "graph"  # the row's own samples
    assert row.warnings.startswith("gen: graph capture failed, measured hot: RuntimeError")


def test_cpu_rows_are_hot_at_every_level_whatever_cache_mode_was_asked() -> None:
    for level in Level:
        sink = Sink()
        Engine(
            plan_of(level, [GOOD[level]], cache_mode=CacheMode.GRAPH), default_registry(), sink
        ).run()
        assert [(r.status, r.cache_mode, r.calls_per_sample) for r in sink.rows] == [
            ("ok", "hot", 1)
        ]


# -- layer parts: batched, and interleaved -------------------------------------------------


def test_layer_parts_are_timed_in_batches_that_alternate() -> None:
    sink = Sink()
    timer = FakeTimer(CacheMode.HOT)
    plan = replace(plan_of(Level.LAYER, ["unfold"]), policy=StopPolicy(samples=12))
    Engine(plan, default_registry(), sink, timer=timer).run()
    (row,) = sink.rows
    assert row.n_samples == 12 and row.gen_ms is not None and row.agg_ms is not None
    # after probe (3 calls) and warm-up (one batch) of each part: 12 samples of each part
    # in four chunks of 3, the order reversed from one chunk to the next
    timed = timer.batches[6:]
    assert timed == [
        ("total", 3), ("gen", 3), ("agg", 3),
        ("agg", 3), ("gen", 3), ("total", 3),
        ("total", 3), ("gen", 3), ("agg", 3),
        ("agg", 3), ("gen", 3), ("total", 3),
    ]  # fmt: skip


def test_time_cap_counts_wall_time_spent_sampling() -> None:
    # A wall clock that runs 10 s per reading and samples of 0.5 ms: the 0.2 s cap is
    # reached after the first round (10 ms / 0.5 ms = 20 samples) although the samples
    # themselves add up to 10 ms; counted alone they would reach it after 20 rounds.
    # The engine reads the clock twice a round, so the reads count the rounds.
    reads: list[float] = []

    def clock() -> float:
        reads.append(10.0 * len(reads))
        return reads[-1]

    sink = Sink()
    timer = FakeTimer(CacheMode.HOT, per_call_ms=0.5)
    policy = StopPolicy(min_samples=3, min_time_s=1.0, max_time_s=0.2, target_rel_ci=0.01)
    plan = replace(plan_of(Level.LAYER, ["unfold"]), policy=policy)
    Engine(plan, default_registry(), sink, timer=timer, wall_clock=clock).run()
    (row,) = sink.rows
    assert row.status == "ok" and row.stop_reason == StopReason.TIME_CAP.value, row
    assert len(reads) == 2 and row.n_samples == 20


def test_a_split_that_does_not_add_up_is_a_warning() -> None:
    sink = Sink()
    timer = FakeTimer(CacheMode.HOT)  # every part 0.1 ms a call: gen + agg twice the layer
    plan = replace(plan_of(Level.LAYER, ["unfold"]), policy=StopPolicy(samples=12))
    Engine(plan, default_registry(), sink, timer=timer).run()
    (row,) = sink.rows
    assert "split: gen + agg is 2.00x the layer's median (0.2 ms against 0.1)" in row.warnings


def test_nvtx_ranges_name_the_layer_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    pushed: list[str] = []
    monkeypatch.setattr(nvtx, "_state", {"on": True})
    monkeypatch.setattr("torch.cuda.nvtx.range_push", pushed.append)
    monkeypatch.setattr("torch.cuda.nvtx.range_pop", lambda: None)
    Engine(plan_of(Level.LAYER, ["unfold"]), default_registry(), Sink()).run()
    assert "layer float32 fwd" in pushed
    expected = {"unfold/prepare", "unfold/warmup", "unfold/gen/warmup", "unfold/agg/warmup"}
    assert expected | {"unfold/samples"} <= set(pushed)


# -- isolation at the layer and model levels -----------------------------------------------

LAYER_SUITE = """
schema_version = 1
level = "layer"
[run]
batch = 1
dtypes = ["float32"]
modes = ["fwd"]
warmup_ms = 1
[[cases]]
name = "k3"
channels = 8
height = 8
width = 7
kernel_size = 3
groups = 2
"""

MODEL_SUITE = """
schema_version = 1
level = "model"
[run]
batch = 1
dtypes = ["float32"]
modes = ["fwd"]
image_size = 16
warmup_ms = 0
[[cases]]
name = "d26"
depth = 26
"""


@pytest.mark.parametrize(("level", "text"), [("layer", LAYER_SUITE), ("model", MODEL_SUITE)])
def test_isolate_runs_the_layer_and_model_levels(tmp_path: Path, level: str, text: str) -> None:
    suite = tmp_path / f"{level}.toml"
    suite.write_text(text)
    out = tmp_path / "out"
    args = ["run", "--suite", str(suite), "--device", "cpu", "--samples", "3", "--isolate"]
    backends = ["unfold", "conv3x3"] if level == "layer" else ["unfold"]  # a network: slow
    for name in backends:
        args += ["--backend", name]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = load_results(out).rows.set_index("backend")
    assert list(rows.index) == backends
    assert set(rows["status"]) == {"ok"}, list(rows["reason"])
    assert set(rows["level"]) == {level} and set(rows["n_samples"]) == {3}
    assert load_results(out).meta["run"]["isolate"] is True
    if level == "layer":
        assert rows.loc["unfold", "gen_ms"] > 0 and rows.loc["unfold", "agg_ms"] > 0
    else:
        assert rows.loc["unfold", "model"] == "rednet-26"
        assert rows.loc["unfold", "images_per_s"] > 0
