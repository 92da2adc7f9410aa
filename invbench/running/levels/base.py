"""What a level tells the engine: how to build a group's workload and each backend's closures,
how to check them, and which columns its rows add.

The engine (invbench.running.engine) owns everything else (warm-up, graphs, hidden
launches, interleaved timing, telemetry, health warnings, rows, faults), so every
measurement feature works the same at every level.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from invbench.backends.base import Backend, Closure
from invbench.core.spec import Case, DeviceKind, Dtype, Level, Mode
from invbench.core.stats import Summary

# Largest accepted max |err| / max |ref| against the float64 reference, by dtype.
TOLERANCE = {Dtype.FLOAT64: 1e-10, Dtype.FLOAT32: 1e-4, Dtype.FLOAT16: 1e-2, Dtype.BFLOAT16: 3e-2}
TOTAL = "total"  # the part whose samples are the row's


@dataclass(frozen=True)
class Check:
    """The outcome of a correctness check: the error, and why it fails (None: it passes)."""

    max_rel_err: float | None = None
    failure: str | None = None


@dataclass
class Built:
    """One backend's closures on its group's inputs.

    ``parts`` holds TOTAL (what the row times) first; the layer level adds "gen" and
    "agg", timed interleaved with it and summarised as ``<part>_ms``, ``<part>_p20_ms``
    and ``<part>_p80_ms``. ``check`` judges the outputs of TOTAL's first call (made
    with outputs poisoned); ``precheck`` runs before that call, for a check that must
    see the untouched state (the model level: eval logits before any training step).
    """

    parts: dict[str, Closure]
    check: Callable[[Sequence[torch.Tensor]], Check] | None = None
    precheck: Callable[[], Check] | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # row fields the build learned


def identity(
    case: Case, backend: Backend, dtype: Dtype, mode: Mode, device: DeviceKind, level: Level
) -> dict[str, Any]:
    """The row fields that say what was run, the same at every level."""
    return dict(
        suite=case.suite,
        case=case.name,
        backend=backend.name,
        kind=backend.kind.value,
        device=device.value,
        dtype=dtype.value,
        mode=mode.value,
        level=level.value,
    )


def within(err: float, tol: float, failure: str) -> Check:
    """The check of an error against a tolerance; NaN fails."""
    return Check(err) if err <= tol else Check(err, failure)


class LevelStrategy(abc.ABC):
    """One level: the engine calls these, in this order, for every case x dtype x mode."""

    level: Level

    def start(self, device: torch.device) -> None:
        """Once per engine, before anything runs (e.g. switch cuDNN autotuning on)."""
        return None

    def runs(self, backend: Backend, case: Case) -> bool:
        """Whether the backend has a row in this case at all (not even a skipped one)."""
        return True

    @abc.abstractmethod
    def base(
        self, case: Case, backend: Backend, dtype: Dtype, mode: Mode, device: DeviceKind
    ) -> dict[str, Any]:
        """The row's identity and shape fields, and its analytic cost where known."""

    def skip_reason(
        self, case: Case, backend: Backend, dtype: Dtype, mode: Mode, device: DeviceKind
    ) -> str | None:
        """Why the backend cannot run this group here, or None."""
        return backend.availability(device, dtype)

    @abc.abstractmethod
    def prepare(
        self,
        case: Case,
        dtype: Dtype,
        mode: Mode,
        backends: Sequence[Backend],
        device: torch.device,
        seed: int,
    ) -> Any:
        """The group's shared inputs (and float64 references), built once for every backend."""

    @abc.abstractmethod
    def build(self, group: Any, backend: Backend, base: dict[str, Any]) -> Built:
        """One backend's closures on the group's inputs (timed with the first call)."""

    def row_fields(self, base: dict[str, Any], summary: Summary) -> dict[str, Any]:
        """Columns this level adds to an ok row."""
        return {}

    def describe(self, backend: Backend, base: dict[str, Any]) -> str:
        """How progress messages name the backend."""
        return backend.name
