"""The public operator and layer, on every built-in involution backend."""

from __future__ import annotations

import pytest
import torch

import invbench
from invbench.core.spec import Geometry
from invbench.operator.reference import involution_reference, relative_error
from tests.conftest import GEOMETRIES, random_inputs

CPU_BACKENDS = ["unfold", "compile"]
TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 5e-3}


def run_backend(backend: str, geom: Geometry, dtype: torch.dtype) -> tuple[float, float, float]:
    x, w = random_inputs(geom, dtype, grad=True)
    out = invbench.involution(
        x, w, stride=geom.stride, padding=geom.padding, dilation=geom.dilation, backend=backend
    )
    assert out.dtype == dtype and out.shape == geom.out_shape
    go = torch.randn(geom.out_shape, dtype=torch.float64)
    gx, gw = torch.autograd.grad(out, (x, w), go.to(dtype))
    x64 = x.detach().double().requires_grad_(True)
    w64 = w.detach().double().requires_grad_(True)
    ref = involution_reference(x64, w64, geom)
    rx, rw = torch.autograd.grad(ref, (x64, w64), go)
    return relative_error(out, ref), relative_error(gx, rx), relative_error(gw, rw)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize(
    "geom",
    GEOMETRIES,
    ids=lambda g: (
        f"{g.height}x{g.width}k{g.kernel_size}s{g.stride}d{g.dilation}g{g.groups}p{g.padding}"
    ),
)
def test_backend_matches_reference_fp32(backend: str, geom: Geometry) -> None:
    errs = run_backend(backend, geom, torch.float32)
    assert max(errs) < TOL[torch.float32], errs


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_unfold_other_dtypes(dtype: torch.dtype) -> None:
    errs = run_backend("unfold", GEOMETRIES[1], dtype)
    assert max(errs) < TOL[dtype], errs


def test_gradcheck_unfold() -> None:
    geom = GEOMETRIES[1]
    x, w = random_inputs(geom, grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: invbench.involution(a, b, stride=2, dilation=2), (x, w)
    )


def _args(**over: object) -> dict[str, object]:
    geom = Geometry(batch=2, channels=8, height=9, width=7, kernel_size=3, groups=2)
    x, w = random_inputs(geom, torch.float32)
    args: dict[str, object] = {"x": x, "weight": w, "stride": 1, "padding": None, "dilation": 1}
    args.update(over)
    return args


def _call(args: dict[str, object], backend: str = "unfold") -> torch.Tensor:
    return invbench.involution(
        args["x"],
        args["weight"],
        stride=args["stride"],  # type: ignore[arg-type]
        padding=args["padding"],
        dilation=args["dilation"],  # type: ignore[arg-type]
        backend=backend,
    )


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"x": torch.randn(8, 9, 7)}, "x must be 4-D"),
        ({"weight": torch.randn(2, 2, 3, 3, 9)}, "weight must be 6-D"),
        ({"weight": torch.randn(2, 3, 3, 3, 9, 7)}, "not divisible by groups G=3"),
        ({"weight": torch.randn(2, 2, 3, 3, 5, 7)}, "does not match the output grid"),
        ({"weight": torch.randn(1, 2, 3, 3, 9, 7)}, "weight batch 1"),
        ({"weight": torch.randn(2, 2, 3, 3, 9, 7, dtype=torch.float64)}, "weight dtype"),
        ({"x": torch.randn(2, 8, 9, 7).to(torch.int32)}, "not a floating type"),
        ({"stride": 0}, "stride must be a positive int"),
        ({"dilation": 1.5}, "dilation must be a positive int"),
        ({"padding": -1}, "padding must be a non-negative int"),
        (
            {"x": torch.randn(2, 8, 2, 2), "weight": torch.randn(2, 2, 3, 3, 1, 1), "padding": 0},
            "larger than the padded input",
        ),
    ],
)
def test_bad_arguments_raise_value_error(over: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _call(_args(**over))


def test_unknown_and_baseline_backends_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        _call(_args(), backend="nope")
    with pytest.raises(ValueError, match="baseline, not an involution backend"):
        _call(_args(), backend="conv3x3")


def test_device_mismatch_is_rejected() -> None:
    args = _args()
    w = args["weight"]
    assert isinstance(w, torch.Tensor)
    args["weight"] = w.to("meta")
    with pytest.raises(ValueError, match="weight device"):
        _call(args)


@pytest.mark.parametrize(("h", "w", "stride"), [(15, 13, 2), (14, 14, 2), (9, 10, 3), (8, 8, 1)])
def test_module_output_grid_and_gradients(h: int, w: int, stride: int) -> None:
    torch.manual_seed(0)
    layer = invbench.Involution(32, kernel_size=7, stride=stride, group_channels=16)
    x = torch.randn(2, 32, h, w, requires_grad=True)
    out = layer(x)
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    assert out.shape == (2, 32, ho, wo)
    weight = layer.generate(x)
    assert weight.shape == (2, 2, 7, 7, ho, wo)
    geom = Geometry(batch=2, channels=32, height=h, width=w, kernel_size=7, stride=stride, groups=2)
    assert relative_error(out, involution_reference(x, weight, geom)) < 1e-5
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert layer.reduce.weight.grad is not None


def test_module_matches_official_pooling_on_even_sizes() -> None:
    torch.manual_seed(1)
    layer = invbench.Involution(16, kernel_size=3, stride=2, group_channels=8).eval()
    x = torch.randn(1, 16, 8, 6)
    pooled = torch.nn.functional.avg_pool2d(x, 2, 2)
    t = layer.span(torch.relu(layer.bn(layer.reduce(pooled))))
    assert torch.allclose(layer.generate(x).reshape(t.shape), t)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": 30}, "not divisible by group_channels"),
        ({"channels": 32, "stride": 0}, "stride must be a positive int"),
        ({"channels": 32, "backend": "nope"}, "unknown backend"),
    ],
)
def test_module_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        invbench.Involution(**kwargs)  # type: ignore[arg-type]


def test_module_rejects_wrong_channels() -> None:
    with pytest.raises(ValueError, match="expected input"):
        invbench.Involution(32)(torch.randn(1, 16, 8, 8))
