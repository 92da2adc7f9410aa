"""The layer level: the whole involution layer (kernel generation + aggregation).

Every involution backend runs :class:`invbench.Involution` with that backend doing
the aggregation; a backend that implements the whole layer itself (``fuse``, e.g.
``triton_fused``) runs its fused form; a convolution baseline runs the conv it
stands for (``conv3x3``: the dense 3x3 conv C -> C with the layer's stride, no BN:
in both networks the middle layer is followed by the same BN, so it is left out
of both). All backends of a group share one input and one set of layer
parameters (BN statistics and affine terms random, so folding BN is tested).

Closures. ``fwd`` is inference: eval mode, no autograd. ``fwd+bwd`` is training:
train mode (BN on batch statistics), then the gradients of the input and of every
parameter. Involution layers also get two part closures on the same input: ``gen``
(kernel generation alone) and ``agg`` (aggregation alone, on a weight generated
once beforehand); the engine times them interleaved with the whole layer.

Correctness: the layer's outputs against the same parameters in float64 with the
float64 reference aggregation (out; in fwd+bwd also grad_x and every parameter's
gradient).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from invbench.backends.base import Backend, Closure, InvolutionBackend
from invbench.core.flops import Cost, involution_cost
from invbench.core.spec import Dtype, Geometry, Mode
from invbench.operator.ops import Involution, involution
from invbench.operator.reference import involution_reference

REDUCTION_RATIO = 4


@runtime_checkable
class LayerFuser(Protocol):
    """A backend that implements the whole involution layer for inference."""

    def fuse(self, layer: Involution) -> Callable[[torch.Tensor], torch.Tensor]: ...


@runtime_checkable
class ConvLayer(Protocol):
    """A convolution baseline: the geometry of the conv it times in place of the layer."""

    def conv_geometry(self, geom: Geometry) -> Geometry: ...


@dataclass
class LayerClosures:
    total: Closure
    gen: Closure | None = None
    agg: Closure | None = None


def layer_support(geom: Geometry) -> str | None:
    """Why the official Involution layer cannot have this geometry, or None."""
    if geom.dilation != 1 or geom.pad != (geom.kernel_size - 1) // 2:
        return "the Involution layer has dilation 1 and padding (K-1)//2 only"
    if geom.kernel_size % 2 == 0:
        return "the Involution layer needs an odd kernel size"
    if geom.channels // REDUCTION_RATIO < 1:
        return f"channels={geom.channels} leaves no hidden channels at reduction {REDUCTION_RATIO}"
    return None


def make_layer(geom: Geometry, seed: int) -> Involution:
    """The layer of a case with seeded random parameters, BN statistics included (float32)."""
    gen = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        layer = Involution(
            geom.channels,
            geom.kernel_size,
            geom.stride,
            group_channels=geom.group_channels,
            reduction_ratio=REDUCTION_RATIO,
        )
    finally:
        torch.random.set_rng_state(torch_state)
    hidden = layer.bn.num_features
    mean, var = layer.bn.running_mean, layer.bn.running_var
    assert mean is not None and var is not None
    with torch.no_grad():
        mean.copy_(torch.randn(hidden, generator=gen) * 0.2)
        var.copy_(torch.rand(hidden, generator=gen) + 0.5)
        layer.bn.weight.copy_(torch.rand(hidden, generator=gen) + 0.5)
        layer.bn.bias.copy_(torch.randn(hidden, generator=gen) * 0.1)
    return layer


def layer_params(layer: nn.Module) -> list[torch.Tensor]:
    return [p for p in layer.parameters() if p.requires_grad]


def _grads(
    out: torch.Tensor, inputs: Sequence[torch.Tensor], grad_out: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    grads = torch.autograd.grad(out, list(inputs), grad_out)
    return (out.detach(), *grads)


def involution_closures(
    layer: Involution, x: torch.Tensor, grad_out: torch.Tensor, mode: Mode, seed: int
) -> LayerClosures:
    """Whole layer, generation alone and aggregation alone (layer.backend aggregates)."""
    s, backend = layer.stride, layer.backend
    params = layer_params(layer)
    if mode is Mode.FWD:
        layer.eval()
        with torch.no_grad():
            weight = layer.generate(x)

        def total() -> tuple[torch.Tensor, ...]:
            with torch.no_grad():
                return (layer(x),)

        def gen() -> tuple[torch.Tensor, ...]:
            with torch.no_grad():
                return (layer.generate(x),)

        def agg() -> tuple[torch.Tensor, ...]:
            with torch.no_grad():
                return (involution(x, weight, stride=s, backend=backend),)

        return LayerClosures(total, gen, agg)
    layer.train()
    xg = x.detach().requires_grad_(True)
    with torch.no_grad():
        w_leaf = layer.generate(xg).detach().requires_grad_(True)
    rng = torch.Generator(device="cpu").manual_seed(seed + 1)
    grad_w = torch.randn(tuple(w_leaf.shape), generator=rng).to(w_leaf)

    def total_bwd() -> tuple[torch.Tensor, ...]:
        return _grads(layer(xg), [xg, *params], grad_out)

    def gen_bwd() -> tuple[torch.Tensor, ...]:
        return _grads(layer.generate(xg), [xg, *params], grad_w)

    def agg_bwd() -> tuple[torch.Tensor, ...]:
        out = involution(xg, w_leaf, stride=s, backend=backend)
        return _grads(out, [xg, w_leaf], grad_out)

    return LayerClosures(total_bwd, gen_bwd, agg_bwd)


def fused_closures(fused: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> LayerClosures:
    def total() -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            return (fused(x),)

    return LayerClosures(total)


def conv_closures(
    cg: Geometry, x: torch.Tensor, grad_out: torch.Tensor, mode: Mode, seed: int
) -> LayerClosures:
    rng = torch.Generator(device="cpu").manual_seed(seed + 2)
    c, k = cg.channels, cg.kernel_size
    per_group = c // cg.groups
    w = (torch.randn(c, per_group, k, k, generator=rng) / (per_group * k * k) ** 0.5).to(x)
    stride, pad, dil, groups = cg.stride, cg.pad, cg.dilation, cg.groups

    def conv(inp: torch.Tensor) -> torch.Tensor:
        return F.conv2d(inp, w, stride=stride, padding=pad, dilation=dil, groups=groups)

    if mode is Mode.FWD:

        def total() -> tuple[torch.Tensor, ...]:
            with torch.no_grad():
                return (conv(x),)

        return LayerClosures(total)
    xg = x.detach().requires_grad_(True)
    w.requires_grad_(True)
    if tuple(grad_out.shape) != cg.out_shape:
        grad_out = torch.randn(cg.out_shape, generator=rng).to(x)

    def total_bwd() -> tuple[torch.Tensor, ...]:
        return _grads(conv(xg), [xg, w], grad_out)

    return LayerClosures(total_bwd)


def build_layer_closures(
    backend: Backend,
    geom: Geometry,
    source: Involution | None,
    x: torch.Tensor,
    grad_out: torch.Tensor,
    mode: Mode,
    seed: int,
) -> LayerClosures:
    """The closures of one backend on the group's input and layer parameters."""
    if isinstance(backend, ConvLayer):
        return conv_closures(backend.conv_geometry(geom), x, grad_out, mode, seed)
    if source is None:
        raise ValueError(layer_support(geom) or "no layer parameters")
    layer = copy.deepcopy(source).to(device=x.device, dtype=x.dtype)
    if isinstance(backend, LayerFuser):
        if mode is not Mode.FWD:
            raise ValueError(f"{backend.name} is inference only")
        return fused_closures(backend.fuse(layer.eval()), x)
    if isinstance(backend, InvolutionBackend):
        layer.backend = backend.name
        return involution_closures(layer, x, grad_out, mode, seed)
    raise ValueError(f"{backend.name} has no layer-level form")


def reference_layer_outputs(
    source: Involution, x: torch.Tensor, grad_out: torch.Tensor, mode: Mode
) -> tuple[torch.Tensor, ...]:
    """The layer in float64 with the float64 reference aggregation."""
    layer = copy.deepcopy(source).to(device="cpu", dtype=torch.float64)
    x64 = x.detach().to(device="cpu", dtype=torch.float64)
    geom = _geometry_of(layer, x64)

    def forward(inp: torch.Tensor) -> torch.Tensor:
        return involution_reference(inp, layer.generate(inp), geom)

    if mode is Mode.FWD:
        layer.eval()
        with torch.no_grad():
            return (forward(x64),)
    layer.train()
    x64.requires_grad_(True)
    g64 = grad_out.detach().to(device="cpu", dtype=torch.float64)
    return _grads(forward(x64), [x64, *layer_params(layer)], g64)


def _geometry_of(layer: Involution, x: torch.Tensor) -> Geometry:
    b, c, h, w = x.shape
    return Geometry(
        batch=b,
        channels=c,
        height=h,
        width=w,
        kernel_size=layer.kernel_size,
        stride=layer.stride,
        groups=layer.groups,
    )


def generation_macs(geom: Geometry) -> int:
    """Per layer call: reduce (C -> C/r) and span (C/r -> K*K*G) 1x1 convs on the output grid."""
    hidden = geom.channels // REDUCTION_RATIO
    kkg = geom.kernel_size**2 * geom.groups
    pixels = geom.batch * geom.out_height * geom.out_width
    return pixels * (geom.channels * hidden + hidden * kkg)


def layer_param_count(geom: Geometry) -> int:
    hidden = geom.channels // REDUCTION_RATIO
    kkg = geom.kernel_size**2 * geom.groups
    return geom.channels * hidden + 2 * hidden + hidden * kkg + kkg


def layer_cost(geom: Geometry, dtype: Dtype, mode: Mode, fused: bool = False) -> Cost:
    """FLOPs and fewest bytes of the whole layer, kernel generation included.

    Unfused: each step launched apart reads its inputs and writes its output once:
    average pool (stride > 1; x -> pooled), reduce + BN + ReLU (-> hidden), span
    (hidden -> weight), aggregation (x, weight -> out), plus the parameters. Fused:
    x, the parameters and out only. fwd+bwd: the aggregation's own fwd+bwd count
    (flops.involution_cost) plus three times the generation's forward (flops and
    bytes), the same ratio as a matrix product's forward and backward.
    """
    size = dtype.itemsize
    agg = involution_cost(geom, size, mode)
    gen_flops = 2 * generation_macs(geom)
    params = layer_param_count(geom)
    if fused:
        return Cost(
            flops=agg.flops + gen_flops,
            bytes=size * (geom.numel("x") + geom.numel("out") + params),
        )
    pixels = geom.batch * geom.out_height * geom.out_width
    hidden = geom.channels // REDUCTION_RATIO
    pooled = pixels * geom.channels
    gen_bytes = size * (
        (geom.numel("x") + pooled if geom.stride > 1 else 0)
        + pooled
        + pixels * hidden
        + pixels * hidden
        + geom.numel("weight")
        + params
    )
    factor = 1 if mode is Mode.FWD else 3
    return Cost(flops=agg.flops + factor * gen_flops, bytes=agg.bytes + factor * gen_bytes)
