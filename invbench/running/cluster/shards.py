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
from invbench.core.spec import Case, Dtype, Level, Mode
from invbench.running.runner import RunPlan
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


def _base(
    plan: RunPlan, level: Level, registry: Registry, case: Case, name: str, dtype: Dtype, mode: Mode
) -> dict[str, Any] | None:
    """The identifying fields of one row, as the runners fill them; None: no row at all."""
    backend = registry.get(name)
    g = case.geometry
    common: dict[str, Any] = dict(
        suite=case.suite,
        case=case.name,
        backend=name,
        kind=backend.kind.value,
        device=plan.device.type,
        dtype=dtype.value,
        mode=mode.value,
    )
    if level is Level.OP:
        cost = backend.cost(g, dtype, mode)
        return dict(common, **g.row_fields(), flops=cost.flops, bytes=cost.bytes)
    from invbench.running.layer_level import ConvLayer, LayerFuser, layer_cost
    from invbench.running.model_level import model_for

    if level is Level.MODEL:
        model = model_for(backend, case.depth)
        if model is None:
            return None  # the model level makes no row for a backend without a network
        return dict(
            common,
            batch=g.batch,
            channels=g.channels,
            height=g.height,
            width=g.width,
            kernel_size=0,
            stride=0,
            dilation=0,
            groups=0,
            padding=0,
            out_height=0,
            out_width=0,
            model=model,
            level=level.value,
        )
    if isinstance(backend, ConvLayer):
        cost = backend.cost(g, dtype, mode)
    else:
        cost = layer_cost(g, dtype, mode, fused=isinstance(backend, LayerFuser))
    return dict(common, **g.row_fields(), flops=cost.flops, bytes=cost.bytes, level=level.value)


def owed_rows(
    plan: RunPlan, level: Level, registry: Registry, shard: Shard
) -> list[dict[str, Any]]:
    """The identifying fields of every row the shard's worker will write, in plan order."""
    case = next(c for c in plan.cases if c.name == shard.case)
    out = []
    for dtype in plan.dtypes:
        for mode in plan.modes:
            for name in plan.backends:
                base = _base(plan, level, registry, case, name, dtype, mode)
                if base is not None:
                    out.append(base)
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
