"""The op level: the aggregation alone, given its weights (one backend closure per row).

Each group builds one random workload (x, weight, grad_out; never zeros) and, when an
involution backend is in the group, its float64 reference (out; in fwd+bwd also
grad_x and grad_weight). Involution backends are checked against it with their
outputs poisoned; baselines are timed unchecked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from invbench.backends.base import Backend, Workload
from invbench.core.spec import Case, DeviceKind, Dtype, Kind, Level, Mode
from invbench.operator.reference import involution_reference, relative_error
from invbench.running.levels.base import (
    TOLERANCE,
    TOTAL,
    Built,
    Check,
    LevelStrategy,
    identity,
    within,
)


def make_workload(
    case: Case, dtype: Dtype, mode: Mode, device: torch.device, seed: int
) -> Workload:
    g = case.geometry
    gen = torch.Generator(device="cpu").manual_seed(seed)
    tdtype = getattr(torch, dtype.value)

    def rand(shape: tuple[int, ...], scale: float = 1.0) -> torch.Tensor:
        t = torch.randn(shape, generator=gen, dtype=torch.float32) * scale
        return t.to(device=device, dtype=tdtype)

    grad = mode is Mode.FWD_BWD
    x = rand(g.x_shape).requires_grad_(grad)
    weight = rand(g.weight_shape, 1.0 / g.kernel_size).requires_grad_(grad)
    return Workload(geom=g, mode=mode, dtype=dtype, x=x, weight=weight, grad_out=rand(g.out_shape))


def reference_outputs(work: Workload) -> tuple[torch.Tensor, ...]:
    x = work.x.detach().to(torch.float64).requires_grad_(work.mode is Mode.FWD_BWD)
    w = work.weight.detach().to(torch.float64).requires_grad_(work.mode is Mode.FWD_BWD)
    if work.mode is Mode.FWD:
        with torch.no_grad():
            return (involution_reference(x, w, work.geom),)
    out = involution_reference(x, w, work.geom)
    gx, gw = torch.autograd.grad(out, (x, w), work.grad_out.to(torch.float64))
    return (out.detach(), gx, gw)


def check_outputs(actual: Iterable[torch.Tensor], expected: Iterable[torch.Tensor]) -> float:
    """Largest relative error over the outputs (out, and grad_x, grad_weight in fwd+bwd)."""
    errs = [relative_error(a, e) for a, e in zip(actual, expected, strict=True)]
    return max(errs)


@dataclass
class OpGroup:
    work: Workload
    expected: tuple[torch.Tensor, ...] | None  # None when no involution backend is in the group


class OpLevel(LevelStrategy):
    level = Level.OP

    def base(
        self, case: Case, backend: Backend, dtype: Dtype, mode: Mode, device: DeviceKind
    ) -> dict[str, Any]:
        g = case.geometry
        cost = backend.cost(g, dtype, mode)
        return dict(
            identity(case, backend, dtype, mode, device, self.level),
            **g.row_fields(),
            flops=cost.flops,
            bytes=cost.bytes,
        )

    def prepare(
        self,
        case: Case,
        dtype: Dtype,
        mode: Mode,
        backends: Sequence[Backend],
        device: torch.device,
        seed: int,
    ) -> OpGroup:
        work = make_workload(case, dtype, mode, device, seed)
        checked = any(b.kind is Kind.INVOLUTION for b in backends)
        return OpGroup(work, reference_outputs(work) if checked else None)

    def build(self, group: OpGroup, backend: Backend, base: dict[str, Any]) -> Built:
        fn = backend.build(group.work)
        expected = group.expected
        if backend.kind is not Kind.INVOLUTION or expected is None:
            return Built({TOTAL: fn})
        dtype = group.work.dtype
        tol = TOLERANCE[dtype]

        def check(outputs: Sequence[torch.Tensor]) -> Check:
            err = check_outputs(outputs, expected)
            return within(
                err,
                tol,
                f"max relative error {err:.3g} vs the float64 reference exceeds "
                f"{tol:g} for {dtype.value}",
            )

        return Built({TOTAL: fn}, check=check)
