"""The profiled step of one backend: its closure, wrapped in named phases and NVTX ranges."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch.profiler import record_function

from invbench.backends.base import Backend
from invbench.core.spec import Mode
from invbench.measure import nvtx
from invbench.profiling.plan import RANGE_PREFIX, ProfilePlan, whole_layer
from invbench.running.levels.layer_workload import ConvLayer, build_layer_closures, make_layer
from invbench.running.levels.op import make_workload


@contextmanager
def phase(name: str) -> Iterator[None]:
    """A range seen by both torch.profiler (record_function) and Nsight (NVTX)."""
    with nvtx.range(name), record_function(name):
        yield


def iter_range(backend: str) -> str:
    return f"{RANGE_PREFIX}{backend}/iter"


def phase_range(backend: str, name: str) -> str:
    return f"{RANGE_PREFIX}{backend}/{name}"


def build_step(plan: ProfilePlan, backend: Backend) -> Callable[[], None]:
    """One iteration of the case as a zero-argument callable that keeps nothing alive."""
    if plan.layer:
        return _layer_step(plan, backend)
    work = make_workload(plan.case, plan.dtype, plan.mode, plan.device, plan.seed)
    fn = backend.build(work)

    def step() -> None:
        outputs = fn()
        del outputs

    return step


def _whole_layer_step(plan: ProfilePlan, backend: Backend) -> Callable[[], None]:
    g = plan.case.geometry
    tdtype = getattr(torch, plan.dtype.value)
    gen = torch.Generator(device="cpu").manual_seed(plan.seed)
    x = torch.randn(g.x_shape, generator=gen).to(device=plan.device, dtype=tdtype)
    grad_out = torch.randn(g.out_shape, generator=gen).to(device=plan.device, dtype=tdtype)
    source = None if isinstance(backend, ConvLayer) else make_layer(g, plan.seed)
    closures = build_layer_closures(backend, g, source, x, grad_out, plan.mode, plan.seed)
    layer_name = phase_range(backend.name, "layer")

    def step() -> None:
        with phase(layer_name):
            out = closures.total()
        del out

    return step


def _layer_step(plan: ProfilePlan, backend: Backend) -> Callable[[], None]:
    from invbench.operator.ops import Involution, involution

    if whole_layer(backend):
        return _whole_layer_step(plan, backend)
    g = plan.case.geometry
    tdtype = getattr(torch, plan.dtype.value)
    layer = Involution(
        g.channels,
        kernel_size=g.kernel_size,
        stride=g.stride,
        group_channels=g.group_channels,
        backend=backend.name,
    ).to(device=plan.device, dtype=tdtype)
    gen = torch.Generator(device="cpu").manual_seed(plan.seed)
    x = torch.randn(g.x_shape, generator=gen).to(device=plan.device, dtype=tdtype)
    gen_name = phase_range(backend.name, "generate")
    agg_name = phase_range(backend.name, "aggregate")
    if plan.mode is Mode.FWD:
        layer.eval()

        def fwd() -> None:
            with torch.no_grad():
                with phase(gen_name):
                    weight = layer.generate(x)
                with phase(agg_name):
                    out = involution(x, weight, stride=layer.stride, backend=backend.name)
            del weight, out

        return fwd
    layer.train()
    x.requires_grad_(True)
    inputs = (x, *layer.parameters())
    grad_out = torch.randn(g.out_shape, generator=gen).to(device=plan.device, dtype=tdtype)
    bwd_name = phase_range(backend.name, "backward")

    def fwd_bwd() -> None:
        with phase(gen_name):
            weight = layer.generate(x)
        with phase(agg_name):
            out = involution(x, weight, stride=layer.stride, backend=backend.name)
        with phase(bwd_name):
            grads = torch.autograd.grad(out, inputs, grad_out)
        del weight, out, grads

    return fwd_bwd


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- profiling --------------------------------------------------------------------
