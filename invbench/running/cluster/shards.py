"""Shards of a run: which cases go to one worker, and which rows each shard owes.

A shard is one case of the suite with every backend, dtype and mode of the plan, so
that every comparison the runner makes (the backends of a case, interleaved) happens
on one device. A run on several GPU types has one lane per type, each with a full
copy of the suite's shards.

The rows a shard owes are known before it runs: when its worker dies or hangs, the
rows it did not send become rows with a status and a reason (owed_rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from invbench.backends.registry import Registry
from invbench.core.spec import DeviceKind
from invbench.running.levels import strategy_for
from invbench.running.plan import RunPlan
from invbench.storage.results import KEY_COLUMNS, ResultRow


@dataclass(frozen=True)
class Shard:
    """One case of the plan, run by one worker on one device."""

    index: int  # position of the case in the plan
    case: str
    lane: str = ""  # the GPU type it must run on ("" for any)

    @property
    def label(self) -> str:
        return f"{self.lane}/{self.case}" if self.lane else self.case


def plan_shards(plan: RunPlan, lane: str = "") -> list[Shard]:
    """One shard per case of the plan, in the plan's order."""
    return [Shard(index=i, case=c.name, lane=lane) for i, c in enumerate(plan.cases)]


def shard_plan(plan: RunPlan, shard: Shard) -> RunPlan:
    """The plan restricted to the shard's case (what its worker runs)."""
    cases = tuple(c for c in plan.cases if c.name == shard.case)
    if len(cases) != 1:
        raise ValueError(f"the plan has no single case {shard.case!r}")
    return replace(plan, cases=cases)


def owed_rows(plan: RunPlan, registry: Registry, shard: Shard) -> list[dict[str, Any]]:
    """The identifying fields of every row the shard's worker will write, in plan order."""
    case = next(c for c in plan.cases if c.name == shard.case)
    strategy = strategy_for(plan.level)
    device = DeviceKind(plan.device.type)
    out = []
    for dtype in plan.dtypes:
        for mode in plan.modes:
            for name in plan.backends:
                backend = registry.get(name)
                if strategy.runs(backend, case):
                    out.append(strategy.base(case, backend, dtype, mode, device))
    return out


def key_of(base: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(base[k] for k in KEY_COLUMNS)


def missing_rows(
    owed: Sequence[dict[str, Any]], have: Sequence[ResultRow], status: str, reason: str
) -> list[ResultRow]:
    """Rows with status and reason for everything owed that is not in have."""
    done = {row.key() for row in have}
    return [
        ResultRow(**base, status=status, reason=reason, telemetry="unavailable: " + reason)
        for base in owed
        if key_of(base) not in done
    ]


def plan_order(plan: RunPlan) -> Any:
    """A sort key putting rows in the plan's order: case, dtype, mode, backend."""
    cases = {c.name: i for i, c in enumerate(plan.cases)}
    dtypes = {d.value: i for i, d in enumerate(plan.dtypes)}
    modes = {m.value: i for i, m in enumerate(plan.modes)}
    backends = {b: i for i, b in enumerate(plan.backends)}
    big = len(cases) + len(dtypes) + len(modes) + len(backends)

    def key(row: ResultRow) -> tuple[int, int, int, int]:
        return (
            cases.get(row.case, big),
            dtypes.get(row.dtype, big),
            modes.get(row.mode, big),
            backends.get(row.backend, big),
        )

    return key
