"""The layer level: the whole involution layer (generation + aggregation) against the conv it
replaces. How the layer, its closures, references and costs are built is in
invbench.running.levels.layer_workload.

Involution backends get three parts, timed interleaved by the engine: the whole layer
(the row's samples), generation alone (``gen_ms``) and aggregation alone (``agg_ms``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from invbench.backends.base import Backend
from invbench.core.spec import Case, DeviceKind, Dtype, Geometry, Kind, Level, Mode
from invbench.operator.ops import Involution
from invbench.running.levels.base import (
    TOLERANCE,
    TOTAL,
    Built,
    Check,
    LevelStrategy,
    identity,
    within,
)
from invbench.running.levels.layer_workload import (
    ConvLayer,
    LayerFuser,
    build_layer_closures,
    layer_cost,
    layer_support,
    make_layer,
    reference_layer_outputs,
)
from invbench.running.levels.op import check_outputs


def network_skip_reason(
    backend: Backend, level: Level, dtype: Dtype, mode: Mode, device: DeviceKind
) -> str | None:
    """Why a backend cannot run a layer or a network here (both levels ask this first)."""
    reason = backend.availability(device, dtype)
    if reason is None and level not in backend.levels:
        reason = f"{backend.name} does not run at the {level.value} level"
    pure_fuser = isinstance(backend, LayerFuser) and backend.kind is Kind.INVOLUTION
    if reason is None and pure_fuser and mode is not Mode.FWD:
        reason = f"{backend.name} is an inference kernel (fwd only)"
    return reason


def autotune_convs(device: torch.device) -> None:
    """Layers and networks are conv-heavy: on a GPU cuDNN picks its fastest conv per shape
    (during the warm-up, never in a sample)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


@dataclass
class LayerGroup:
    geom: Geometry
    mode: Mode
    dtype: Dtype
    seed: int
    x: torch.Tensor
    grad_out: torch.Tensor
    source: Involution | None  # None: the Involution layer cannot have this geometry
    expected: tuple[torch.Tensor, ...] | None  # float64 outputs, when an involution runs


class LayerLevel(LevelStrategy):
    level = Level.LAYER

    def start(self, device: torch.device) -> None:
        autotune_convs(device)

    def base(
        self, case: Case, backend: Backend, dtype: Dtype, mode: Mode, device: DeviceKind
    ) -> dict[str, Any]:
        g = case.geometry
        if isinstance(backend, ConvLayer):
            cost = backend.cost(g, dtype, mode)  # the conv's own cost
        else:
            cost = layer_cost(g, dtype, mode, fused=isinstance(backend, LayerFuser))
        return dict(
            identity(case, backend, dtype, mode, device, self.level),
            **g.row_fields(),
            flops=cost.flops,
            bytes=cost.bytes,
        )

    def skip_reason(
        self, case: Case, backend: Backend, dtype: Dtype, mode: Mode, device: DeviceKind
    ) -> str | None:
        reason = network_skip_reason(backend, self.level, dtype, mode, device)
        if reason is None and not isinstance(backend, ConvLayer):
            support = layer_support(case.geometry)
            if support is not None:
                reason = support
            elif backend.kind is Kind.BASELINE:
                reason = f"{backend.name} has no layer-level form"
        return reason

    def prepare(
        self,
        case: Case,
        dtype: Dtype,
        mode: Mode,
        backends: Sequence[Backend],
        device: torch.device,
        seed: int,
    ) -> LayerGroup:
        g = case.geometry
        tdtype = getattr(torch, dtype.value)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        x = torch.randn(g.x_shape, generator=gen).to(device, tdtype)
        grad_out = torch.randn(g.out_shape, generator=gen).to(device, tdtype)
        source = make_layer(g, seed) if layer_support(g) is None else None
        expected = None
        if source is not None and any(b.kind is Kind.INVOLUTION for b in backends):
            expected = reference_layer_outputs(source, x, grad_out, mode)
        return LayerGroup(g, mode, dtype, seed, x, grad_out, source, expected)

    def build(self, group: LayerGroup, backend: Backend, base: dict[str, Any]) -> Built:
        c = build_layer_closures(
            backend, group.geom, group.source, group.x, group.grad_out, group.mode, group.seed
        )
        parts = {TOTAL: c.total}
        if c.gen is not None and c.agg is not None:
            parts.update(gen=c.gen, agg=c.agg)
        expected = group.expected
        if backend.kind is not Kind.INVOLUTION or expected is None:
            return Built(parts)
        dtype = group.dtype
        tol = TOLERANCE[dtype]

        def check(outputs: Sequence[torch.Tensor]) -> Check:
            err = check_outputs(outputs, expected)
            return within(
                err,
                tol,
                f"max relative error {err:.3g} of the layer vs float64 (reference "
                f"aggregation) exceeds {tol:g} for {dtype.value}",
            )

        return Built(parts, check=check)
