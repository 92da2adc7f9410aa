"""What the engine records of how a row was measured: precision, clock floor, timer floor."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import pytest
import torch
from typer.testing import CliRunner

from invbench.backends.base import Closure, Workload
from invbench.backends.registry import Registry
from invbench.cli.app import app
from invbench.core.choices import CacheMode
from invbench.core.spec import Dtype, Mode
from invbench.core.stats import StopPolicy
from invbench.measure.telemetry import RowTelemetry
from invbench.running.engine import Engine
from invbench.running.plan import RunPlan
from invbench.storage.results import ResultRow
from tests.measure_backends import TINY, _TestBackend

CPU = torch.device("cpu")


class Sink:
    def __init__(self) -> None:
        self.rows: list[ResultRow] = []
        self.samples: list[list[float]] = []

    def add(self, row: ResultRow, samples_ms: Sequence[float] = ()) -> None:
        self.rows.append(row)
        self.samples.append(list(samples_ms))


class FlagsBackend(_TestBackend):
    """Records torch's TF32 and cuDNN flags while its closure is built and called."""

    seen: list[tuple[bool, bool, bool]]

    def build(self, work: Workload) -> Closure:
        self.seen = []
        out = work.x.detach()

        def fn() -> tuple[torch.Tensor, ...]:
            b = torch.backends
            self.seen.append((b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.benchmark))
            return (out,)

        return fn


class TickTimer:
    """Reports `ms` per call for every sample, on a timer of resolution `resolution_ms`."""

    cache_mode = CacheMode.HOT
    method = "fake"
    last_hidden = False
    busy = None

    def __init__(self, ms: float, resolution_ms: float = 0.0) -> None:
        self.ms = ms
        self.resolution_ms = resolution_ms
        self.last_host_ms: list[float] = []

    def sample(
        self, fn: Callable[[], object], n: int, hide_launch: bool = False, gate: object = None
    ) -> list[float]:
        for _ in range(n):
            fn()
        self.last_host_ms = [self.ms] * n
        return [self.ms] * n

    def synchronize(self) -> None:
        return None


class ClockSampler:
    """An NVML sampler whose batches read the SM clocks given, in turn."""

    available = True
    reason = None
    max_sm_clock_mhz = 2000.0

    def __init__(self, clocks: list[float]) -> None:
        self.clocks = clocks
        self.batches = 0
        self.last_batch_sm_mhz: float | None = None

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def other_processes(self) -> int:
        return 0

    @contextlib.contextmanager
    def window(self, label: str, timing: bool) -> Iterator[None]:
        if timing:  # the batch's busy reading
            self.last_batch_sm_mhz = self.clocks[self.batches % len(self.clocks)]
            self.batches += 1
        yield

    def busy(self, still_busy: Callable[[], bool]) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def take(self, label: str) -> RowTelemetry:
        return RowTelemetry("nvml")


def _run(
    backend: _TestBackend, policy: StopPolicy, dtype: Dtype = Dtype.FLOAT32, **kw: object
) -> tuple[ResultRow, list[float]]:
    registry = Registry()
    registry.register(backend)
    plan = RunPlan(
        cases=(TINY,),
        backends=(backend.name,),
        dtypes=(dtype,),
        modes=(Mode.FWD,),
        device=CPU,
        policy=policy,
        warmup_ms=0.5,
        tf32=bool(kw.pop("tf32", False)),
        min_clock=kw.pop("min_clock", None),  # type: ignore[arg-type]
    )
    sink = Sink()
    Engine(plan, registry, sink, **kw).run()  # type: ignore[arg-type]
    (row,) = sink.rows
    return row, sink.samples[0]


@pytest.mark.parametrize("tf32", [False, True])
def test_the_precision_policy_holds_while_a_group_runs_and_is_restored(tf32: bool) -> None:
    torch.backends.cudnn.allow_tf32 = True  # torch's default
    backend = FlagsBackend("flags")
    row, _ = _run(backend, StopPolicy(samples=3), tf32=tf32)
    assert set(backend.seen) == {(tf32, tf32, True)}  # every call: the run's policy
    assert torch.backends.cudnn.allow_tf32 is True  # and torch's own afterwards
    # a CPU row never uses TF32, whatever was asked; cuDNN does not run on it
    assert (row.tf32, row.cudnn_benchmark) == (False, False)


def test_the_clock_floor_drops_slow_batches_and_says_how_many() -> None:
    sampler = ClockSampler([1900.0, 1000.0])  # every other batch at half the clock
    row, samples = _run(
        FlagsBackend("b"), StopPolicy(samples=40), timer=TickTimer(0.5), sampler=sampler,
        min_clock=0.75,
    )  # fmt: skip
    assert row.status == "ok" and row.clock_dropped > 0
    assert row.n_samples == len(samples) == 40
    assert "clock floor:" in row.warnings and "under 1500 MHz" in row.warnings


def test_the_clock_floor_never_leaves_a_row_empty() -> None:
    sampler = ClockSampler([900.0])  # every batch throttled
    row, samples = _run(
        FlagsBackend("b"), StopPolicy(samples=10), timer=TickTimer(0.5), sampler=sampler,
        min_clock=0.75, wall_clock=iter(range(10_000)).__next__,
    )  # fmt: skip
    assert row.status == "ok" and row.clock_dropped == 0 and len(samples) > 0
    assert "low clock: every batch ran under 1500 MHz" in row.warnings


def test_a_kernel_under_the_timer_resolution_stops_on_it() -> None:
    policy = StopPolicy(min_samples=10, min_time_s=0.0, max_time_s=60.0, target_rel_ci=0.01)
    row, _ = _run(FlagsBackend("b"), policy, timer=TickTimer(0.003, resolution_ms=0.0005))
    assert row.stop_reason == "resolution"
    assert "timer-bound" in row.warnings


def test_cli_min_clock_out_of_range_is_a_usage_error(tmp_path: object) -> None:
    result = CliRunner().invoke(
        app, ["run", "--suite", "smoke", "--device", "cpu", "--min-clock", "1.5"]
    )
    assert result.exit_code == 2
    assert "--min-clock must be in (0, 1], got 1.5" in result.output
