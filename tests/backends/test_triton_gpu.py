"""The `triton` backend compiled for a real CUDA device.

Skipped without CUDA. TRITON_INTERPRET is removed while these tests run, so the
compiled kernels are used even if another module set it. Most tests run one
fixed launch configuration (INVBENCH_TRITON_AUTOTUNE=0) to keep the number of
compilations down; test_autotuned_launch checks the autotuned path.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

pytest.importorskip("triton")

import invbench
from invbench.backends.base import poisoned_outputs
from invbench.core.spec import Geometry
from invbench.operator.reference import involution_reference, relative_error

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


@pytest.fixture(autouse=True)
def _compiled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("INVBENCH_TRITON_AUTOTUNE", "0")
    yield


def _check(geom: Geometry, dtype: torch.dtype, seed: int = 0) -> None:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    dev = "cuda"
    x = torch.randn(geom.x_shape, generator=gen, device=dev).to(dtype).requires_grad_()
    w = torch.randn(geom.weight_shape, generator=gen, device=dev).to(dtype).requires_grad_()
    grad_out = torch.randn(geom.out_shape, generator=gen, device=dev).to(dtype)
    with poisoned_outputs():
        out = invbench.involution(
            x, w, stride=geom.stride, padding=geom.padding, dilation=geom.dilation,
            backend="triton",
        )  # fmt: skip
        grad_x, grad_w = torch.autograd.grad(out, (x, w), grad_out)
    x64 = x.detach().double().requires_grad_()
    w64 = w.detach().double().requires_grad_()
    ref = involution_reference(x64, w64, geom)
    ref_gx, ref_gw = torch.autograd.grad(ref, (x64, w64), grad_out.double())
    errors = {
        "out": relative_error(out, ref),
        "grad_x": relative_error(grad_x, ref_gx),
        "grad_weight": relative_error(grad_w, ref_gw),
    }
    assert all(e <= TOL[dtype] for e in errors.values()), errors


# resnet-shapes layers at batch 2 (the kernels' index math does not depend on B)
RESNET = {
    "stem": Geometry(2, 32, 112, 112, 3, stride=1, groups=2),
    "layer1": Geometry(2, 64, 56, 56, 7, stride=1, groups=4),
    "layer2-1st": Geometry(2, 128, 56, 56, 7, stride=2, groups=8),
    "layer3-1st": Geometry(2, 256, 28, 28, 7, stride=2, groups=16),
    "layer4": Geometry(2, 512, 7, 7, 7, stride=1, groups=32),
}

ODD = {
    "k11-dil3-nonsquare": Geometry(2, 16, 37, 29, 11, stride=1, dilation=3, groups=4),
    "k5-stride4-g1-chunked": Geometry(2, 72, 30, 23, 5, stride=4, groups=1),
    "k4-even-stride3-g=c": Geometry(3, 6, 19, 20, 4, stride=3, groups=6),
    "k7-stride2-odd-pad0": Geometry(1, 32, 29, 31, 7, stride=2, groups=2, padding=0),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name", list(RESNET))
def test_resnet_layers(name: str, dtype: torch.dtype) -> None:
    _check(RESNET[name], dtype)


@pytest.mark.parametrize("name", list(ODD))
def test_odd_shapes(name: str) -> None:
    _check(ODD[name], torch.float32, seed=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_autotuned_launch(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype) -> None:
    from invbench.backends import triton_kernels

    monkeypatch.delenv("INVBENCH_TRITON_AUTOTUNE")
    assert triton_kernels.launch_mode() is triton_kernels.LaunchMode.AUTOTUNE
    _check(Geometry(4, 64, 28, 28, 7, stride=2, groups=4), dtype, seed=2)
    _check(Geometry(4, 64, 28, 28, 7, stride=2, groups=4), dtype, seed=3)  # tuned config reused


def test_autotuner_finds_every_configuration_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parallel precompilation fills the kernel cache the autotuner launches from."""
    from invbench.backends import triton_kernels

    monkeypatch.delenv("INVBENCH_TRITON_AUTOTUNE")
    monkeypatch.setenv("INVBENCH_TRITON_COMPILE_WORKERS", "4")
    fwd = triton_kernels._kernels(triton_kernels.LaunchMode.AUTOTUNE).fwd
    device = torch.cuda.current_device()
    before = len(fwd.fn.device_caches[device][0])
    geom = Geometry(2, 48, 13, 11, 5, groups=3)  # a shape no other test compiles
    x = torch.randn(geom.x_shape, device="cuda")
    w = torch.randn(geom.weight_shape, device="cuda")
    out = triton_kernels.involution_forward(x, w, geom)
    assert len(fwd.fn.device_caches[device][0]) - before == len(fwd.configs)
    assert relative_error(out, involution_reference(x, w, geom)) <= 1e-5


def test_channels_last_on_cuda() -> None:
    x = torch.randn(2, 16, 15, 17, device="cuda").to(memory_format=torch.channels_last)
    w = torch.randn(2, 1, 3, 3, 8, 9, device="cuda")
    geom = Geometry(2, 16, 15, 17, 3, stride=2, groups=1)
    out = invbench.involution(x, w, stride=2, backend="triton")
    assert relative_error(out, involution_reference(x, w, geom)) <= 1e-5


@pytest.mark.slow
def test_offsets_beyond_int32() -> None:
    """x, out and the gradients hold > 2^31 elements, the weight > 2^32: check the far end."""
    b, c, h, w, k, g = 1, 2052, 1024, 1024, 3, 513
    geom = Geometry(b, c, h, w, k, groups=g)
    assert geom.numel("x") > 2**31 and geom.numel("weight") > 2**32
    free, _ = torch.cuda.mem_get_info()
    needed = 2 * (4 * geom.numel("x") + 2 * geom.numel("weight")) + 2**30
    if free < needed:
        pytest.skip(
            f"needs {needed / 2**30:.0f} GiB of free device memory, {free / 2**30:.0f} free"
        )
    gen = torch.Generator(device="cuda").manual_seed(7)
    x = torch.randn(geom.x_shape, generator=gen, device="cuda", dtype=torch.bfloat16)
    wt = torch.randn(geom.weight_shape, generator=gen, device="cuda", dtype=torch.bfloat16)
    grad_out = torch.randn(geom.out_shape, generator=gen, device="cuda", dtype=torch.bfloat16)
    x.requires_grad_()
    wt.requires_grad_()
    out = invbench.involution(x, wt, backend="triton")
    grad_x, grad_w = torch.autograd.grad(out, (x, wt), grad_out)
    cg = c // g
    for first in (0, g - 1):  # the first and the last group
        chans = slice(first * cg, (first + 1) * cg)
        sub = Geometry(b, cg, h, w, k, groups=1)
        xs = x.detach()[:, chans].double().requires_grad_()
        ws = wt.detach()[:, first : first + 1].double().requires_grad_()
        ref = involution_reference(xs, ws, sub)
        ref_gx, ref_gw = torch.autograd.grad(ref, (xs, ws), grad_out[:, chans].double())
        assert relative_error(out[:, chans], ref) <= 1e-2
        assert relative_error(grad_x[:, chans], ref_gx) <= 1e-2
        assert relative_error(grad_w[:, first : first + 1], ref_gw) <= 1e-2
