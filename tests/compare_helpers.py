"""Shared pieces of the compare/ab/export tests: a backend whose speed an env var sets."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from invbench.backends.base import Backend, Closure, Workload
from invbench.backends.registry import Registry
from invbench.core.spec import Kind
from invbench.storage.results import META_FILE, ResultRow, ResultWriter, write_json

SPIN_ENV = "INVBENCH_TEST_SPIN_FACTOR"


def spin(ms: float) -> None:
    end = time.perf_counter() + ms / 1e3
    while time.perf_counter() < end:
        pass


class SpinBackend(Backend):
    """Busy-waits base_ms times the factor in SPIN_ENV (read when the closure is built)."""

    name: ClassVar[str] = "spin"
    kind: ClassVar[Kind] = Kind.BASELINE
    description: ClassVar[str] = "test backend: busy-wait, slowed by $INVBENCH_TEST_SPIN_FACTOR"
    base_ms: ClassVar[float] = 0.4
    env: ClassVar[str | None] = SPIN_ENV

    def build(self, work: Workload) -> Closure:
        factor = float(os.environ.get(self.env, "1")) if self.env else 1.0
        ms = self.base_ms * factor
        x = work.x

        def fn() -> tuple[Any, ...]:
            spin(ms)
            return (x,)

        return fn


class SteadyBackend(SpinBackend):
    """The same busy-wait, never slowed: the untouched control."""

    name: ClassVar[str] = "steady"
    description: ClassVar[str] = "test backend: busy-wait of a fixed length"
    env: ClassVar[str | None] = None


def spin_registry() -> Registry:
    registry = Registry()
    registry.register(SpinBackend())
    registry.register(SteadyBackend())
    return registry


def row(backend: str, status: str = "ok", median_ms: float | None = 1.0, **kw: Any) -> ResultRow:
    fields: dict[str, Any] = dict(
        suite="synthetic",
        case="c1",
        backend=backend,
        kind="involution",
        device="cpu",
        dtype="float32",
        mode="fwd",
        batch=1,
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
        status=status,
        median_ms=median_ms if status == "ok" else None,
    )
    fields.update(kw)
    return ResultRow(**fields)


def write_dir(
    directory: Path,
    rows: Sequence[tuple[ResultRow, Sequence[float]]],
    meta: dict[str, Any] | None = None,
) -> Path:
    """A result directory holding exactly these rows and samples."""
    writer = ResultWriter(directory)
    for r, samples in rows:
        writer.add(r, samples)
    base_meta: dict[str, Any] = {
        "schema_version": 1,
        "git": {"commit": "0" * 40, "dirty": False},
        "torch": "2.0",
        "triton": None,
        "cpu": "test cpu",
        "cuda_devices": [],
        "nvml": {"devices": []},
    }
    write_json(directory / META_FILE, {**base_meta, **(meta or {})})
    return directory


def set_meta(directory: Path, **changes: Any) -> None:
    path = directory / META_FILE
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))
