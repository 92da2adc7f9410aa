"""--interleave-dtypes: a case's dtypes timed in one set of rounds, as its backends are."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from invbench.backends.base import Closure, Workload
from invbench.backends.registry import Registry, default_registry
from invbench.cli.app import app
from invbench.core.spec import Dtype, Mode
from invbench.core.stats import StopPolicy
from invbench.measure.telemetry import RowTelemetry
from invbench.running.bench import RunRequest, plan_run, run_meta
from invbench.running.engine import Engine
from invbench.running.plan import RunPlan
from tests.measure_backends import TINY, _TestBackend
from tests.running.test_engine_method import Sink, TickTimer

CPU = torch.device("cpu")
BOTH = (Dtype.FLOAT32, Dtype.BFLOAT16)


class LogBackend(_TestBackend):
    """Appends (backend, dtype) to a shared log at every call of its closure."""

    dtypes = frozenset(BOTH)

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        super().__init__(name)
        self.log = log

    def build(self, work: Workload) -> Closure:
        out, tag = work.x.detach(), (self.name, str(work.x.dtype).removeprefix("torch."))

        def fn() -> tuple[torch.Tensor, ...]:
            self.log.append(tag)
            return (out,)

        return fn


def _run(interleave: bool, modes: tuple[Mode, ...] = (Mode.FWD,)) -> tuple[Sink, list[str]]:
    log: list[tuple[str, str]] = []
    registry = Registry()
    for name in ("a", "b"):
        registry.register(LogBackend(name, log))
    plan = RunPlan(
        cases=(TINY,), backends=("a", "b"), dtypes=BOTH, modes=modes, device=CPU,
        policy=StopPolicy(samples=60), warmup_ms=0.5, interleave_dtypes=interleave,
    )  # fmt: skip
    sink = Sink()
    # 0.5 ms a call: 20 samples a 10 ms round, so 60 samples take three rounds a row
    Engine(plan, registry, sink, timer=TickTimer(0.5)).run()  # type: ignore[arg-type]
    return sink, [dtype for _, dtype in log]


def _switches(seq: list[str]) -> int:
    return sum(a != b for a, b in itertools.pairwise(seq))


def test_without_the_flag_each_dtype_is_timed_after_the_other() -> None:
    sink, dtypes = _run(interleave=False)
    assert {(r.backend, r.dtype) for r in sink.rows} == {
        (b, d.value) for b in "ab" for d in BOTH
    }  # fmt: skip
    assert all(r.status == "ok" and r.n_samples == 60 for r in sink.rows)
    assert _switches(dtypes) == 1  # every float32 call, then every bfloat16 one


def test_with_the_flag_the_dtypes_rounds_alternate() -> None:
    sink, dtypes = _run(interleave=True)
    assert len(sink.rows) == 4
    assert all(r.status == "ok" and r.n_samples == 60 for r in sink.rows)
    # each row's three rounds are spread over the set: float32 and bfloat16 take turns
    # (a, b at float32, then both at bfloat16, and back in reverse order)
    assert _switches(dtypes) >= 4
    first_bf16 = dtypes.index("bfloat16")
    last_f32 = len(dtypes) - 1 - dtypes[::-1].index("float32")
    assert first_bf16 < last_f32


def test_modes_are_not_mixed_by_the_flag() -> None:
    _, dtypes = _run(interleave=True, modes=(Mode.FWD, Mode.FWD_BWD))
    assert _switches(dtypes) >= 8  # both modes' sets alternate their dtypes
    plan = RunPlan(
        cases=(TINY,), backends=("a",), dtypes=BOTH, modes=(Mode.FWD, Mode.FWD_BWD),
        device=CPU, interleave_dtypes=True,
    )  # fmt: skip
    sets = list(plan.group_sets())
    assert [[(m, d) for _, d, m in s] for s in sets] == [
        [(Mode.FWD, d) for d in BOTH],
        [(Mode.FWD_BWD, d) for d in BOTH],
    ]


def test_interleave_dtypes_with_isolate_is_a_usage_error() -> None:
    result = CliRunner().invoke(
        app,
        ["run", "--suite", "smoke", "--device", "cpu", "--interleave-dtypes", "--isolate"],
    )
    assert result.exit_code == 2
    assert "--interleave-dtypes and --isolate" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("flag", [True, False])
def test_the_run_records_whether_dtypes_were_interleaved(flag: bool, tmp_path: Path) -> None:
    request = RunRequest(suite="smoke", device="cpu", interleave_dtypes=flag, out=tmp_path)
    suite, plan = plan_run(request, default_registry())
    assert plan.interleave_dtypes is flag
    meta = run_meta(suite, plan, request)
    assert meta["run"]["interleave_dtypes"] is flag
    assert RunRequest.from_json(request.to_json()).interleave_dtypes is flag  # --resume


class LabelSampler:
    """A sampler that records the windows opened and the telemetry taken, by label."""

    available = False
    reason = "fake"
    max_sm_clock_mhz = None
    last_batch_sm_mhz = None

    def __init__(self) -> None:
        self.windows: list[str] = []
        self.taken: list[str] = []

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def other_processes(self) -> None:
        return None

    def window(self, label: str, timing: bool) -> contextlib.AbstractContextManager[None]:
        self.windows.append(label)
        return contextlib.nullcontext()

    def take(self, label: str) -> RowTelemetry:
        self.taken.append(label)
        return RowTelemetry("fake")


def test_each_row_takes_the_telemetry_of_its_own_dtype() -> None:
    registry = Registry()
    registry.register(LogBackend("a", []))
    plan = RunPlan(
        cases=(TINY,), backends=("a",), dtypes=BOTH, modes=(Mode.FWD,), device=CPU,
        policy=StopPolicy(samples=60), warmup_ms=0.5, interleave_dtypes=True,
    )  # fmt: skip
    sampler = LabelSampler()
    Engine(plan, registry, Sink(), timer=TickTimer(0.5), sampler=sampler).run()  # type: ignore[arg-type]
    assert sorted(sampler.taken) == ["a bfloat16", "a float32"]  # one take per row
    assert set(sampler.windows) == {"a bfloat16", "a float32"}


class SteadyAndNoisyTimer(TickTimer):
    """0.5 ms a call for backend "a" (it converges at once); "b" alternates 0.5 and 1.0 ms,
    so its median's interval never narrows and only the time cap stops it."""

    def __init__(self, log: list[tuple[str, str]]) -> None:
        super().__init__(0.5)
        self.log = log

    def sample(
        self, fn: Callable[[], object], n: int, hide_launch: bool = False, gate: object = None
    ) -> list[float]:
        for _ in range(n):
            fn()
        if self.log[-1][0] == "a":
            return [0.5] * n
        return [0.5 if i % 2 else 1.0 for i in range(n)]


def _run_until_b_stops(interleave: bool) -> tuple[Sink, list[str]]:
    log: list[tuple[str, str]] = []
    registry = Registry()
    for name in ("a", "b"):
        registry.register(LogBackend(name, log))
    policy = StopPolicy(min_samples=10, min_time_s=0.0, max_time_s=0.2, target_rel_ci=0.05)
    plan = RunPlan(
        cases=(TINY,), backends=("a", "b"), dtypes=BOTH, modes=(Mode.FWD,), device=CPU,
        policy=policy, warmup_ms=0.5, interleave_dtypes=interleave,
    )  # fmt: skip
    sink = Sink()
    engine = Engine(plan, registry, sink, timer=SteadyAndNoisyTimer(log))  # type: ignore[arg-type]
    engine.run()
    return sink, [name for name, _ in log]


def test_with_the_flag_every_row_stays_in_the_rotation_until_the_last_stops() -> None:
    sink, names = _run_until_b_stops(interleave=True)
    rows = {(r.backend, r.dtype): r for r in sink.rows}
    assert all(r.status == "ok" for r in rows.values())
    # b runs to the time cap; a converged in its first round but kept sampling with it
    assert {rows["b", d.value].stop_reason for d in BOTH} == {"time-cap"}
    assert {rows["a", d.value].stop_reason for d in BOTH} == {"converged"}
    for d in BOTH:  # as many rounds as b (each about 10 ms: twice b's samples at 0.5 ms)
        assert rows["a", d.value].n_samples >= rows["b", d.value].n_samples
    assert "a" in names[-80:]  # the last rounds still time a


def test_without_the_flag_a_converged_row_leaves_the_rotation() -> None:
    sink, names = _run_until_b_stops(interleave=False)
    rows = {(r.backend, r.dtype): r for r in sink.rows}
    for d in BOTH:
        assert rows["a", d.value].n_samples < rows["b", d.value].n_samples
    assert "a" not in names[-80:]  # only b is timed at the end
