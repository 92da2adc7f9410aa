"""Parallel compilation of a kernel's autotuning configurations, with a stand-in kernel.

The real thing needs a GPU (tests/test_triton_gpu.py checks that the autotuner finds
every configuration compiled); here the glue is checked: each configuration is
warmed up once per key, inside Triton's AsyncCompileMode, with the launch's
arguments, and failures are left to the autotuner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("triton")
async_compile = pytest.importorskip("triton.runtime._async_compile")

from invbench.backends import triton_precompile as tp  # noqa: E402


@dataclass
class FakeConfig:
    kwargs: dict[str, int]
    num_warps: int

    def all_kwargs(self) -> dict[str, int]:
        return {**self.kwargs, "num_warps": self.num_warps}


@dataclass
class FakeJit:
    fail_on: int | None = None
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    modes: list[object] = field(default_factory=list)

    def warmup(self, *args: Any, grid: Any, **kwargs: Any) -> None:
        self.modes.append(async_compile.active_mode.get())
        self.calls.append((args, {"grid": grid, **kwargs}))
        if kwargs["BLOCK_P"] == self.fail_on:
            raise RuntimeError("out of resources")


@dataclass
class FakeAutotuner:
    fn: FakeJit
    configs: list[FakeConfig]


def _tuner(fail_on: int | None = None) -> FakeAutotuner:
    configs = [FakeConfig({"BLOCK_P": p}, w) for p, w in [(32, 1), (64, 2), (128, 4)]]
    return FakeAutotuner(FakeJit(fail_on), configs)


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tp, "_done", set())
    monkeypatch.setenv("INVBENCH_TRITON_COMPILE_WORKERS", "4")


def test_every_config_is_warmed_up_once_per_key_inside_async_compile() -> None:
    tuner = _tuner()
    grid = object()
    assert tp.precompile(tuner, ("k", 1), grid, ("x", "w"), {"C": 64, "CH_AXIS": 0})
    assert [c[1]["BLOCK_P"] for c in tuner.fn.calls] == [32, 64, 128]
    for args, kwargs in tuner.fn.calls:
        assert args == ("x", "w") and kwargs["grid"] is grid and kwargs["C"] == 64
    assert {kw["num_warps"] for _, kw in tuner.fn.calls} == {1, 2, 4}
    assert all(isinstance(m, async_compile.AsyncCompileMode) for m in tuner.fn.modes)
    assert async_compile.active_mode.get() is None  # the mode is closed again
    assert not tp.precompile(tuner, ("k", 1), grid, ("x", "w"), {"C": 64})  # same key: nothing
    assert len(tuner.fn.calls) == 3
    assert tp.precompile(tuner, ("k", 2), grid, ("x", "w"), {"C": 64})  # a new shape
    assert len(tuner.fn.calls) == 6


def test_a_failing_config_is_left_to_the_autotuner() -> None:
    tuner = _tuner(fail_on=64)
    assert tp.precompile(tuner, "key", None, (), {})
    assert len(tuner.fn.calls) == 3  # the others still compiled


def test_one_worker_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVBENCH_TRITON_COMPILE_WORKERS", "1")
    tuner = _tuner()
    assert not tp.precompile(tuner, "key", None, (), {})
    assert tuner.fn.calls == []


def test_worker_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVBENCH_TRITON_COMPILE_WORKERS", "3")
    assert tp.compile_workers() == 3
    monkeypatch.setenv("INVBENCH_TRITON_COMPILE_WORKERS", "many")
    assert 1 <= tp.compile_workers() <= tp.MAX_DEFAULT_WORKERS
    monkeypatch.delenv("INVBENCH_TRITON_COMPILE_WORKERS")
    assert 1 <= tp.compile_workers() <= tp.MAX_DEFAULT_WORKERS
